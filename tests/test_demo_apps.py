"""The two demo apps as users reach them: real servers on a free loopback port (started here, waited for,
stopped), the Gradio app driven over HTTP by gradio_client — its detections compared with what the runner
recorded for the same image — and a headless Chromium screenshot of each app that must show boxes.

Set OPTIM_ARTIFACTS_DIR to keep the screenshots (CI artifacts)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from demo_helpers import assert_same_boxes, frame_file, runner_detections
from PIL import Image

from optim.demo.drawing import PALETTE

pytestmark = pytest.mark.slow
ARGS = ["--variant", "onnxruntime-int8", "--compare", "openvino-int8"]
LEFT, RIGHT = "demo: onnxruntime-int8", "demo: openvino-int8"
STREAMLIT_APP = str(Path(__file__).resolve().parents[1] / "optim" / "demo" / "streamlit_app.py")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def _serve(command: list[str], ready_url: str, log: Path, timeout: float = 240):
    """Start a server, wait until `ready_url` answers 200, yield its process; stop it afterwards."""
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(ready_url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def gradio_url(demo_report, tmp_path_factory):
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", "optim.demo.gradio_app", "--report", str(demo_report), *ARGS, "--port", str(port)]
    with _serve(command, url, tmp_path_factory.mktemp("gradio") / "server.log"):
        yield url


@pytest.fixture(scope="module")
def streamlit_url(demo_report, tmp_path_factory):
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", "streamlit", "run", STREAMLIT_APP, "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--", "--report", str(demo_report), *ARGS]
    with _serve(command, url + "_stcore/health", tmp_path_factory.mktemp("st") / "server.log"):
        yield url


@pytest.fixture(scope="module")
def client(gradio_url):
    from gradio_client import Client

    return Client(gradio_url, verbose=False)


def test_gradio_detects_what_the_runner_recorded(client, demo_report):
    from gradio_client import handle_file

    for image_id in (1, 5):
        image, summary, boxes = client.predict(LEFT, handle_file(frame_file(demo_report, image_id)), None, 0.3,
                                               api_name="/detect")
        assert boxes and Image.open(image).size == (384, 384)  # the 128 px frame, enlarged for display
        assert_same_boxes(boxes, runner_detections(demo_report, "onnxruntime-int8", image_id, 0.3))
        assert "measured by the report: mAP@[.5:.95]" in summary and "ms in the engine" in summary


def test_gradio_answers_bad_uploads_with_a_message(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    with pytest.raises(AppError, match="notes.txt: not an image the demo can read"):
        client.predict(LEFT, handle_file(text), None, 0.5, api_name="/detect")
    movie = tmp_path / "clip.mp4"
    movie.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    with pytest.raises(AppError, match="clip.mp4: "):
        client.predict(LEFT, RIGHT, "upload", handle_file(movie), 3, 10, 0.5, api_name="/video")


def test_gradio_side_by_side_image_and_synthetic_video(client):
    from optim.demo.uploads import open_video

    image, summary, boxes = client.predict(LEFT, RIGHT, None, None, 0.5, api_name="/compare")
    assert set(boxes) == {LEFT, RIGHT} and boxes[LEFT] and "detections differ" in summary
    assert Image.open(image).width > 2 * 384
    player, download, summary, table = client.predict(LEFT, RIGHT, "synthetic clip", None, 3, 10, 0.5,
                                                      api_name="/video")
    video = player["video"] if isinstance(player, dict) else player
    assert Path(download).read_bytes() == Path(video).read_bytes()
    _, frames = open_video(download)
    assert len(list(frames)) == 10
    assert "10 frames in" in summary and len(table["data"]) == 10
    assert table["headers"] == ["frame", f"{LEFT} ms", f"{RIGHT} ms", "differing"]


def _label_pixels(png: Path, classes: set[int]) -> int:
    """Pixels of the screenshot in the label colours of `classes` (the filled label tags of their boxes)."""
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    hits = np.zeros(pixels.shape[:2], dtype=bool)
    for label in classes:
        hits |= (np.abs(pixels - np.array(PALETTE[label % len(PALETTE)])) <= 2).all(axis=-1)
    return int(hits.sum())


def _screenshot_with_boxes(url: str, ready: str, classes: set[int], name: str, tmp_path: Path,
                           timeout: float = 30) -> int:
    """Open `url`, wait for `ready`, then take screenshots until one shows the label colours of `classes` (the page
    may still be fading the image in) or `timeout` passes; returns the label pixels of the last one."""
    from cdp import CHROMIUM, Page

    if not CHROMIUM.exists():
        pytest.skip("chromium not installed (make chromium)")
    with Page(tmp_path / "chromium-profile", 1400, 1000) as page:
        page.open(url, ready)
        deadline = time.monotonic() + timeout
        while True:
            shot = page.screenshot(tmp_path / name)
            pixels = _label_pixels(shot, classes)
            if pixels > 150 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    if os.environ.get("OPTIM_ARTIFACTS_DIR"):
        artifacts = Path(os.environ["OPTIM_ARTIFACTS_DIR"])
        artifacts.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, artifacts / name)
    return pixels


def test_gradio_page_shows_boxes(gradio_url, client, tmp_path):
    # What the page shows on load: the variant on the built-in sample frame.
    _, _, boxes = client.predict(LEFT, None, None, 0.5, api_name="/detect")
    ready = "(i => !!i && i.complete && i.naturalWidth >= 384)(document.querySelector('#detections img'))"
    assert _screenshot_with_boxes(gradio_url, ready, {box["class_id"] for box in boxes}, "demo-gradio.png",
                                  tmp_path) > 150


def test_streamlit_page_shows_boxes(streamlit_url, client, tmp_path):
    _, _, boxes = client.predict(LEFT, None, None, 0.5, api_name="/detect")  # the same detector and frame
    ready = "[...document.images].some(i => i.complete && i.naturalWidth >= 384 && i.src.includes('/media/'))"
    assert _screenshot_with_boxes(streamlit_url, ready, {box["class_id"] for box in boxes}, "demo-streamlit.png",
                                  tmp_path) > 150

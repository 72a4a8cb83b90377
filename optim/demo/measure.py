"""Measure the demo against its targets and print them as JSON:

    python -m optim.demo.measure [--report reports/int8 --variant A --compare B] [--frames 60]

1. cold start: from launching `python -m optim.demo.gradio_app` (a fresh process on a free loopback port) to the
   first annotated image received by an HTTP client (gradio_client, /detect): target <= 10 s;
2. a second image, client round trip: target <= the variant's measured p50 (results.json, batch 1) + 100 ms;
3. side by side of `--variant` and `--compare` on a synthetic clip, in process (detection, drawing, H.264
   encoding): target >= 10 frames/s; and one image through the core alone (detection + drawing, no HTTP);
4. the Gradio floor: the same round trip to an endpoint that only enlarges the image (no model).
The load average before each step is recorded: on a shared machine it explains slow figures."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

from optim.cli import run_cli
from optim.demo.core import DemoCore, synthetic_frames
from optim.demo.detector import Choice
from optim.demo.options import demo_parser


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _frame_files(folder: Path, count: int) -> list[Path]:
    paths = []
    for index, image in enumerate(synthetic_frames(11, count)):
        paths.append(folder / f"frame{index}.png")
        image.save(paths[-1])
    return paths


def measure_app(args, folder: Path) -> dict:
    """Cold start and second-image round trip of the Gradio app, as a user's HTTP client sees them."""
    from gradio_client import Client, handle_file

    port = _free_port()
    command = [sys.executable, "-m", "optim.demo.gradio_app", "--port", str(port)]
    if args.report:
        command += ["--report", str(args.report)] + (["--variant", args.variant] if args.variant else [])
    if args.threads:
        command += ["--threads", str(args.threads)]
    first, second = _frame_files(folder, 2)
    label = (Choice(report=args.report, variant=args.variant) if args.variant else Choice(model=args.model)).label
    load = os.getloadavg()[0]
    start = time.perf_counter()
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        while True:
            if server.poll() is not None:
                raise SystemExit(f"the app exited with {server.returncode}: {' '.join(command)}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                time.sleep(0.05)
        client = Client(url, verbose=False)
        client.predict(label, handle_file(first), None, 0.5, api_name="/detect")
        cold = time.perf_counter() - start
        rounds = []
        for _ in range(5):
            begin = time.perf_counter()
            _, summary, _ = client.predict(label, handle_file(second), None, 0.5, api_name="/detect")
            rounds.append((time.perf_counter() - begin) * 1000)
    finally:
        server.terminate()
        server.wait(timeout=20)
    rounds.sort()
    return {"detector": label, "load_average_1min": round(load, 2), "cold_start_s": round(cold, 2),
            "second_image_ms_median": round(rounds[len(rounds) // 2], 1),
            "second_image_ms_all": [round(r, 1) for r in rounds],
            "second_image_summary": summary}


def measure_gradio_floor(folder: Path) -> dict:
    """The same client round trip to a Gradio endpoint that only enlarges the image (no model, no drawing): what
    Gradio and HTTP alone cost on this machine now."""
    from gradio_client import Client, handle_file

    from optim.demo.gradio_app import _import_gradio

    gr = _import_gradio()
    port = _free_port()
    with gr.Blocks(analytics_enabled=False) as app:
        upload, output = gr.File(type="filepath"), gr.Image(type="pil", format="png")
        gr.Button().click(lambda path: Image.open(path).convert("RGB").resize((384, 384)), upload, output,
                          api_name="echo")
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        image = _frame_files(folder, 1)[0]
        client.predict(handle_file(image), api_name="/echo")
        load = os.getloadavg()[0]
        rounds = []
        for _ in range(5):
            begin = time.perf_counter()
            client.predict(handle_file(image), api_name="/echo")
            rounds.append((time.perf_counter() - begin) * 1000)
    finally:
        with contextlib.redirect_stdout(io.StringIO()):  # Gradio prints "Closing server ..." to stdout
            app.close()
    return {"load_average_1min": round(load, 2), "round_trip_ms_median": round(sorted(rounds)[2], 1),
            "round_trip_ms_all": [round(r, 1) for r in sorted(rounds)]}


def measure_side_by_side(args, folder: Path) -> dict:
    core = DemoCore.from_options(args.model, args.report, args.variant, args.compare, args.threads)
    labels = list(core.default_pair)
    for label in labels:
        core.detector(label)
    frames = synthetic_frames(3, args.frames)
    single = []
    for image in synthetic_frames(11, 6)[1:]:  # one detector, image in -> annotated image out, no HTTP
        begin = time.perf_counter()
        core.detect_image(labels[0], image, 0.5)
        single.append((time.perf_counter() - begin) * 1000)
    load = os.getloadavg()[0]
    outcome = core.annotate_video(labels, frames, 10.0, 0.5, folder / "side_by_side.mp4")
    return {"in_process_image_ms_median": round(sorted(single)[len(single) // 2], 1),
            "pair": labels, "frames": len(outcome.rows), "load_average_1min": round(load, 2),
            "frames_per_second": round(outcome.frames_per_second, 1), "summary": outcome.summary,
            "p50_ms": {label: core.detector(label).measured["p50_ms"] if core.detector(label).measured else None
                       for label in labels}}


def main(argv: list[str] | None = None) -> int:
    parser = demo_parser("python -m optim.demo.measure")
    parser.add_argument("--frames", type=int, default=60, help="frames of the synthetic clip (default 60)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="optim-demo-measure-") as tmp:
        folder = Path(tmp)
        app = measure_app(args, folder)
        pair = measure_side_by_side(args, folder) if args.report else None
        floor = measure_gradio_floor(folder)
    result = {"app": app, "side_by_side": pair, "gradio_floor": floor}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)

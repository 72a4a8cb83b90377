"""The exported repository's Python-backend models (pre- and post-processing) run in a real `tritonserver`: the
one PyTriton bundles, with its Python backend, started on its own on free loopback ports. Its outputs must equal
the lab's pre/post-processing exactly, and an undecodable image gets an error for that request only.

(The native onnxruntime/openvino backends and the ensemble need Triton's container; PyTriton ships neither.)"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from optim.data.pixels import decode_image, preprocess_array
from optim.evaluation.postprocess import postprocess
from optim.serving.client import TritonClient
from optim.serving.environment import serving_python
from optim.serving.launch import free_port, log_tail
from optim.serving.options import ServingOptions
from optim.serving.repository import deploy_variant


def bundled_tritonserver(workdir: Path) -> tuple[Path, Path, dict]:
    """(tritonserver binary, backends folder, environment) from PyTriton's wheel in the serving environment,
    laid out as PyTriton itself does (the Python-backend stub for this Python version beside the backend)."""
    python = serving_python()
    if not python.is_file():
        pytest.skip("no serving environment: run `make serve-setup`")
    probe = ("import pytriton, sys, sysconfig; from pathlib import Path; "
             "print(Path(pytriton.__file__).parent); print(f'{sys.version_info[0]}.{sys.version_info[1]}'); "
             "print(sysconfig.get_config_var('LIBDIR'))")
    package, version, libdir = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                                              check=True).stdout.split()
    bundled = Path(package) / "tritonserver"
    stub = bundled / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not (bundled / "bin" / "tritonserver").is_file() or not stub.is_file():
        pytest.skip(f"PyTriton's bundled tritonserver not found where expected ({bundled})")
    shutil.copytree(bundled / "bin", workdir / "bin")
    shutil.copytree(bundled / "backends", workdir / "backends")
    shutil.copy2(stub, workdir / "backends" / "python")
    libs = Path(package).parent / "nvidia_pytriton.libs"
    env = {**os.environ, "PATH": f"{python.parent}:{os.environ['PATH']}",  # the stub's Python: the serving venv
           "LD_LIBRARY_PATH": f"{libdir}:{libs}"}
    return workdir / "bin" / "tritonserver", workdir / "backends", env


@pytest.fixture(scope="module")
def triton_python_models(served_report, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("triton")
    repo = tmp / "repo"
    deploy_variant(served_report, "onnxruntime-fp32", repo, ServingOptions())
    binary, backends, env = bundled_tritonserver(tmp / "tritonserver")
    port = free_port()
    models = ["onnxruntime-fp32_preprocess", "onnxruntime-fp32_postprocess"]
    command = [str(binary), f"--model-repository={repo}", "--model-control-mode=explicit",
               *[f"--load-model={m}" for m in models], f"--backend-directory={backends}",
               "--http-address=127.0.0.1", f"--http-port={port}", "--allow-grpc=false", "--allow-metrics=false"]
    log = tmp / "tritonserver.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not all(_ready(port, m) for m in models):
            assert process.poll() is None and time.monotonic() < deadline, log_tail(log)
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def _ready(port: int, model: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/{model}/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_preprocess_model_matches_the_lab_and_rejects_bad_images(triton_python_models, tiny_dataset_root):
    from tritonclient.utils import InferenceServerException

    url = triton_python_models
    files = sorted((tiny_dataset_root / "test").glob("*.jpg"))[:3]
    client = TritonClient(url, "http")
    images = np.array([[f.read_bytes()] for f in files], dtype=np.object_)
    out = client.infer("onnxruntime-fp32_preprocess", {"image": images}, ["pixel_values", "orig_size"])
    decoded = [decode_image(f.read_bytes()) for f in files]
    np.testing.assert_array_equal(out["pixel_values"], np.stack([preprocess_array(im, (128, 128)) for im in decoded]))
    assert out["orig_size"].tolist() == [[im.height, im.width] for im in decoded]
    with pytest.raises(InferenceServerException, match="not a decodable image"):
        client.infer("onnxruntime-fp32_preprocess", {"image": np.array([[b"junk"]], np.object_)}, ["pixel_values"])
    client.close()


def test_postprocess_model_matches_the_lab(triton_python_models):
    url = triton_python_models
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 20, 5)).astype(np.float32)
    boxes = rng.uniform(0.1, 0.5, size=(2, 20, 4)).astype(np.float32)
    sizes = np.array([[480, 640], [128, 128]], dtype=np.int64)
    client = TritonClient(url, "http")
    out = client.infer("onnxruntime-fp32_postprocess", {"logits": logits, "pred_boxes": boxes, "orig_size": sizes},
                       ["boxes", "scores", "labels"])
    client.close()
    for i, det in enumerate(postprocess(logits, boxes, sizes, score_threshold=-1.0)):
        np.testing.assert_array_equal(out["boxes"][i], det.boxes)
        np.testing.assert_array_equal(out["scores"][i], det.scores)
        np.testing.assert_array_equal(out["labels"][i], det.labels)

"""optim.serve, optim.load: a real PyTriton server (bundled tritonserver) on free loopback ports, real HTTP and
gRPC requests. The served mAP must equal the in-process mAP the runner measured; bad requests get clear errors
and the server keeps serving; a server that cannot come up fails with its log's last lines."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

from optim.errors import OptimError
from optim.serving.accuracy import served_accuracy
from optim.serving.client import TritonClient
from optim.serving.environment import serving_python, serving_ready
from optim.serving.launch import ServerProcess
from optim.serving.loadgen import Target, closed_loop, open_loop
from optim.serving.options import ServingOptions
from optim.serving.repository import deploy_variant

pytestmark = pytest.mark.skipif(not (serving_ready() or serving_python().is_file()),
                                reason="no serving environment: run `make serve-setup` (PyTriton needs numpy<2)")


ORT_MODELS = ["onnxruntime-fp32", "onnxruntime-fp32_detect"]


@pytest.fixture(scope="module")
def ort_repository(served_report, tmp_path_factory):
    out = tmp_path_factory.mktemp("repo") / "ort"
    return out, deploy_variant(served_report, "onnxruntime-fp32", out, ServingOptions(instances=2))


@pytest.fixture(scope="module")
def ort_server(ort_repository):
    with ServerProcess(ort_repository[0], ORT_MODELS) as server:
        yield server
    assert server.process.returncode == 0, "the server did not stop cleanly"


def _in_process(served_report, pixels):
    from optim.engines.onnxruntime_engine import create_session, run_session

    return run_session(create_session(served_report / "artifacts" / "onnxruntime-fp32" / "model.onnx",
                                      ["CPUExecutionProvider"], 1), pixels)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_raw_outputs_match_the_engine_in_process(ort_server, served_report, protocol):
    url = ort_server.http_url if protocol == "http" else ort_server.grpc_url
    pixels = np.random.default_rng(0).normal(size=(2, 3, 128, 128)).astype(np.float32)
    client = TritonClient(url, protocol)
    served = client.infer("onnxruntime-fp32", {"pixel_values": pixels}, ["logits", "pred_boxes"])
    client.close()
    logits, boxes = _in_process(served_report, pixels)
    np.testing.assert_allclose(served["logits"], logits, atol=1e-4)
    np.testing.assert_allclose(served["pred_boxes"], boxes, atol=1e-5)


@pytest.mark.parametrize("path,protocol", [("detect", "http"), ("raw", "grpc")])
def test_served_map_equals_in_process_map(ort_server, ort_repository, path, protocol):
    url = ort_server.http_url if protocol == "http" else ort_server.grpc_url
    result = served_accuracy(url, protocol, ort_repository[1], path)
    assert result["images"] == 24 and result["in_process_map"] > 0.1
    assert result["equal_to_4_decimals"], result


def test_load_closed_and_open_loop_with_server_split(ort_server):
    pixels = np.random.default_rng(0).normal(size=(1, 3, 128, 128)).astype(np.float32)
    target = Target(ort_server.grpc_url, "grpc", "onnxruntime-fp32", {"pixel_values": pixels},
                    ["logits", "pred_boxes"], ort_server.metrics_url)
    closed = closed_loop(target, concurrency=4, duration_s=1.5, warmup_s=0.5)
    assert closed["errors"] == 0 and closed["requests"] > 10
    assert 0 < closed["p50_ms"] <= closed["p90_ms"] <= closed["p99_ms"]
    server = closed["server"]
    assert server["requests"] >= closed["requests"] and server["queue_ms"] >= 0 and server["compute_infer_ms"] > 0
    assert server["mean_batch"] >= 1
    opened = open_loop(target, rate=20, duration_s=1.5)
    assert opened["errors"] == 0 and opened["requests"] == opened["offered"] > 10


def _error_of(client, model, inputs, outputs):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as caught:
        client.infer(model, inputs, outputs)
    return str(caught.value)


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(ort_server):
    client = TritonClient(ort_server.http_url, "http")
    raw = ["logits", "pred_boxes"]
    wrong_shape = _error_of(client, "onnxruntime-fp32", {"pixel_values": np.zeros((1, 3, 64, 64), np.float32)}, raw)
    assert "pixel_values" in wrong_shape and "shape" in wrong_shape
    wrong_type = _error_of(client, "onnxruntime-fp32", {"pixel_values": np.zeros((1, 3, 128, 128), np.float64)}, raw)
    assert "pixel_values" in wrong_type and "FP64" in wrong_type
    detections = ["boxes", "scores", "labels"]
    corrupt = _error_of(client, "onnxruntime-fp32_detect", {"image": np.array([[b"not an image"]], np.object_)},
                        detections)
    assert "not a decodable image" in corrupt
    empty = _error_of(client, "onnxruntime-fp32_detect", {"image": np.array([[b""]], np.object_)}, detections)
    assert "empty image" in empty
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (200, 150), (90, 90, 90)).save(png, format="PNG")
    out = client.infer("onnxruntime-fp32_detect", {"image": np.array([[png.getvalue()]], np.object_)}, detections)
    assert out["boxes"].shape == (1, 20, 4) and out["labels"].shape == (1, 20)
    assert ort_server.ready()
    client.close()


def test_openvino_variant_served_from_the_report(served_report, tmp_path):
    repository = tmp_path / "ov"
    with ServerProcess(served_report, ["openvino-fp32", "openvino-fp32_detect"], ["--variant", "openvino-fp32", "--repository", str(repository),
                                       "--instances", "1", "--no-batching"]) as server:
        from optim.serving.repository import read_manifest

        result = served_accuracy(server.grpc_url, "grpc", read_manifest(repository), "detect")
    assert result["equal_to_4_decimals"], result


def test_a_server_that_cannot_start_fails_with_its_log(ort_repository, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(ort_repository[0], broken)
    (broken / "onnxruntime-fp32" / "1" / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(OptimError, match=r"exited with code 2(.|\n)*sha256"):
        ServerProcess(broken, ORT_MODELS, timeout_s=120).start()
    slow = ServerProcess(ort_repository[0], ORT_MODELS, timeout_s=0.5)
    with pytest.raises(OptimError, match="not ready within 0.5 s"):
        slow.start()
    assert slow.process.poll() is not None  # stopped, not left running


def test_load_cli_reports_accuracy_and_exits_nonzero_on_nothing_to_do(ort_server, ort_repository):
    command = [sys.executable, "-m", "optim.load", ort_server.http_url]
    result = subprocess.run([*command, "--accuracy", str(ort_repository[0]), "--path", "raw"], capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0 and ": equal" in result.stdout, result.stdout + result.stderr
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and "nothing to measure" in result.stderr and "Traceback" not in result.stderr


def test_optim_run_serving_section_measures_and_reports(served_report):
    import json

    results = json.loads((served_report / "results.json").read_text())
    [record] = results["serving"]
    assert record["status"] == "ok", record.get("error")
    closed, opened = record["levels"]
    assert closed["concurrency"] == 2 and opened["rate"] == 20
    assert closed["errors"] == opened["errors"] == 0 and closed["server"]["mean_batch"] >= 1
    assert record["accuracy"]["equal_to_4_decimals"], record["accuracy"]
    page = (served_report / "index.html").read_text()
    assert '<section class="card" id="serving">' in page and ": equal" in page

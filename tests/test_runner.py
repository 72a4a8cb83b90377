"""End to end: a small experiment on a tiny DETR runs every CPU engine, records a failing variant with its
reason, writes the report, resumes without re-measuring, and gives identical mAP when run again."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SPEC = """
name: e2e
model: tiny-detr-arch
data: {{dataset: synthetic, root: {root}, eval_split: test, eval_images: 8, calibration_split: val, calibration_images: 4}}
batch_sizes: [1, 2]
eval_batch_size: 4
latency: {{warmup_iters: 1, min_iters: 3, max_iters: 10, max_seconds: 0.5, threads: 1, reference_seconds: 0.5}}
profile: {{stages: false}}
output_dir: reports
variants:
  - name: pytorch-fp32
    engine: {{kind: pytorch}}
  - name: onnxruntime-int8
    steps: [{{kind: quantize, method: ort_static}}]
    engine: {{kind: onnxruntime}}
  - name: openvino-fp32
    engine: {{kind: openvino}}
  - name: needs-a-gpu
    engine: {{kind: pytorch, device: cuda}}
"""


def _run(spec_path, *args):
    return subprocess.run([sys.executable, "-m", "optim.run", str(spec_path), *args], capture_output=True, text=True,
                          timeout=600, check=False, cwd=spec_path.parent)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, tiny_dataset_root):
    tmp = tmp_path_factory.mktemp("e2e")
    spec_path = tmp / "e2e.yaml"
    spec_path.write_text(SPEC.format(root=tiny_dataset_root))
    result = _run(spec_path)
    return spec_path, tmp / "reports" / "e2e", result


@pytest.mark.slow
def test_run_records_results_and_failures(first_run):
    _, out, result = first_run
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    status = {v["name"]: v for v in results["variants"]}
    assert [name for name, v in status.items() if v["status"] == "ok"] == ["pytorch-fp32", "onnxruntime-int8", "openvino-fp32"]
    assert "no CUDA GPU" in status["needs-a-gpu"]["error"]
    assert not results["model"]["trained"]
    for name in ("pytorch-fp32", "onnxruntime-int8", "openvino-fp32"):
        variant = status[name]
        assert set(variant["latency"]) == {"1", "2"} and variant["latency"]["1"]["p50_ms"] > 0
        assert 0 <= variant["accuracy"]["map"] <= 1 and variant["accuracy"]["images"] == 8
        assert variant["spec"]["name"] == name and variant["model_size_bytes"] > 0
    # Engines that run from a file are timed in a clean worker process; each is cross-checked by its own tool.
    timing = {name: status[name]["timing"] for name in ("pytorch-fp32", "onnxruntime-int8", "openvino-fp32")}
    assert [t["timed"] for t in timing.values()] == ["in-process", "worker process", "worker process"]
    assert [t["reference"]["tool"] for t in timing.values()] == ["torch.utils.benchmark", "onnxruntime_test",
                                                                 "benchmark_app"]
    for record in timing.values():
        assert record["reference"]["reference_ms"] > 0 and record["reference"]["ratio"] > 0
    # Every mAP, Δ mAP, p50 and speedup has a 95 % interval around it (1000 image resamples, the spec's seed).
    assert results["intervals"] == {"confidence": 0.95, "resamples": 1000, "seed": 0, "images": 8}
    for name in ("pytorch-fp32", "onnxruntime-int8", "openvino-fp32"):
        intervals, accuracy = status[name]["intervals"], status[name]["accuracy"]
        assert intervals["map"][0] - 1e-3 <= accuracy["map"] <= intervals["map"][1] + 1e-3
        assert intervals["map_delta"][0] <= intervals["map_delta"][1] and set(intervals["speedup"]) == {"1", "2"}
        for record in status[name]["latency"].values():
            assert record["p50_ci_ms"][0] <= record["p50_ms"] <= record["p50_ci_ms"][1]
    assert status["pytorch-fp32"]["intervals"]["map_delta"] == [0.0, 0.0]
    assert "[95 % CI]" in (out / "index.html").read_text()
    assert set(results["machine_peaks"]) >= {"fp32", "int8"}
    assert 0 < status["onnxruntime-int8"]["peak_share"]["share"] < 1
    assert status["onnxruntime-int8"]["peak_share"]["peak_precision"] == "int8"
    assert "Latency cross-check" in (out / "index.html").read_text()
    # FP32 through OpenVINO reproduces the PyTorch detections.
    assert status["openvino-fp32"]["accuracy"]["fidelity"] == pytest.approx(1.0)
    assert status["openvino-fp32"]["accuracy"]["map"] == pytest.approx(status["pytorch-fp32"]["accuracy"]["map"], abs=1e-3)
    assert (out / "index.html").is_file() and (out / "results.csv").is_file()


@pytest.mark.slow
def test_rerun_resumes_and_reproduces_map(first_run):
    spec_path, out, _ = first_run
    stored = out / "variants" / "onnxruntime-int8.json"
    before = json.loads(stored.read_text())
    (out / "variants" / "openvino-fp32.json").unlink()  # as if the run had been interrupted there
    result = _run(spec_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "onnxruntime-int8: already measured" in result.stderr + result.stdout
    assert json.loads(stored.read_text())["finished_at"] == before["finished_at"]
    results = json.loads((out / "results.json").read_text())
    redone = {v["name"]: v for v in results["variants"]}["openvino-fp32"]
    assert redone["status"] == "ok"
    fresh = _run(spec_path, "--fresh", "--only", "onnxruntime-int8")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    again = json.loads(stored.read_text())
    assert again["finished_at"] != before["finished_at"]
    assert again["accuracy"]["map"] == before["accuracy"]["map"]  # same seed, same data: identical mAP

"""Sweeps on a real local Ray cluster (`python -m optim.run SPEC --ray`): the same mAP as the sequential run, records
that name their machine, resume, a failing variant recorded while the others finish, and a timed sweep whose
timings ran through the per-node timing resource."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys

import pytest

from optim.environment import cpu_name
from optim.errors import OptimError
from optim.run import main

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="the 'ray' extra is not installed (pip install -e '.[ray]')")

SPEC = """
name: sweep
model: synth-detr
data: {{dataset: synthetic, root: {root}, eval_split: test, eval_images: 8, calibration_split: val, calibration_images: 4}}
eval_batch_size: 4
latency: {{enabled: false}}
output_dir: reports
variants:
  - name: pytorch-fp32
    engine: {{kind: pytorch}}
  - name: pytorch-int8-dynamic
    steps: [{{kind: quantize, method: torch_dynamic}}]
    engine: {{kind: pytorch}}
  - name: onnxruntime-fp32
    engine: {{kind: onnxruntime}}
  - name: needs-a-gpu
    engine: {{kind: pytorch, device: cuda}}
"""

TIMED = """
name: timed
model: synth-detr
data: {{dataset: synthetic, root: {root}, eval_split: test, eval_images: 8, calibration_split: val, calibration_images: 4}}
eval_batch_size: 4
latency: {{warmup_iters: 1, min_iters: 3, max_iters: 10, max_seconds: 0.2, steady_wait: 0, reference: false}}
output_dir: reports
variants:
  - name: pytorch-fp32
    engine: {{kind: pytorch}}
  - name: onnxruntime-fp32
    engine: {{kind: onnxruntime}}
"""


def _records(out) -> dict[str, dict]:
    return {v["name"]: v for v in json.loads((out / "results.json").read_text())["variants"]}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, tiny_dataset_root):
    """The accuracy-only spec run sequentially, then on a local Ray with 2 workers, then on Ray again (resume)."""
    tmp = tmp_path_factory.mktemp("ray")
    spec = tmp / "sweep.yaml"
    spec.write_text(SPEC.format(root=tiny_dataset_root))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp)  # a spec's output_dir stays under the working folder
        assert main([str(spec), "--out", "reports/sequential"]) == 0
        assert main([str(spec), "--out", "reports/ray", "--ray", "--ray-workers", "2"]) == 0
        first = {p.name: p.read_text() for p in (tmp / "reports" / "ray" / "variants").glob("*.json")}
        assert main([str(spec), "--out", "reports/ray", "--ray", "--ray-workers", "2"]) == 0
    yield tmp / "reports", first
    import ray

    ray.shutdown()  # main() stops the Ray it started; this only guards against a run that raised midway


@needs_ray
def test_ray_gives_the_sequential_map_figures(sweeps):
    reports, _ = sweeps
    sequential, distributed = _records(reports / "sequential"), _records(reports / "ray")
    assert list(distributed) == list(sequential)  # the report lists variants in spec order, whoever finished first
    ok = [name for name, record in sequential.items() if record["status"] == "ok"]
    assert ok == ["pytorch-fp32", "pytorch-int8-dynamic", "onnxruntime-fp32"]
    for name in ok:
        assert distributed[name]["status"] == "ok"
        assert distributed[name]["accuracy"] == sequential[name]["accuracy"]  # every figure, exactly
        assert distributed[name]["accuracy"]["map"] > 0.1  # the trained model detects: a real comparison
    assert distributed["pytorch-int8-dynamic"]["accuracy"]["map"] != distributed["pytorch-fp32"]["accuracy"]["map"]


@needs_ray
def test_ray_records_name_their_machine(sweeps):
    reports, _ = sweeps
    results = json.loads((reports / "ray" / "results.json").read_text())
    assert results["distributed"]["address"] == "local" and results["distributed"]["cpus"] == 2
    for name in ("pytorch-fp32", "pytorch-int8-dynamic", "onnxruntime-fp32"):
        record = _records(reports / "ray")[name]
        machine = record["measured_on"]["accuracy"]
        assert machine["hostname"] == socket.gethostname() and machine["cpu"] == cpu_name()
        assert record["measured_on"]["latency"] is None and record["latency"] == {}  # accuracy only
        # ONNX Runtime / OpenVINO on the cores shared by 2 workers; PyTorch on the sequential run's threads (its
        # INT8 kernels give other results with another thread count)
        sequential = _records(reports / "sequential")[name]["accuracy_threads"]
        assert record["accuracy_threads"] == {"pytorch": sequential["pytorch"], "engine": max(1, (os.cpu_count() or 1) // 2)}
    page = (reports / "ray" / "index.html").read_text()
    assert "Measured on" in page and "Measured by Ray tasks" in page and "accuracy only" in page


@needs_ray
def test_ray_rerun_keeps_finished_variants(sweeps):
    reports, first = sweeps
    for name in ("pytorch-fp32", "pytorch-int8-dynamic", "onnxruntime-fp32"):
        assert (reports / "ray" / "variants" / f"{name}.json").read_text() == first[f"{name}.json"]


@needs_ray
def test_ray_records_a_failing_variant_and_finishes_the_others(sweeps):
    import torch

    if torch.cuda.is_available():
        pytest.skip("the failing variant is a CUDA one: it runs on this machine")
    reports, _ = sweeps
    records = _records(reports / "ray")
    assert records["needs-a-gpu"]["status"] == "failed" and "no CUDA GPU" in records["needs-a-gpu"]["error"]
    assert [r["status"] for n, r in records.items() if n != "needs-a-gpu"] == ["ok"] * 3


@needs_ray
def test_ray_times_each_variant_on_the_node_that_built_it(tmp_path, tiny_dataset_root, monkeypatch):
    spec = tmp_path / "timed.yaml"
    spec.write_text(TIMED.format(root=tiny_dataset_root))
    monkeypatch.chdir(tmp_path)
    assert main([str(spec), "--ray", "--ray-workers", "2"]) == 0
    records = _records(tmp_path / "reports" / "timed")
    assert [r["timing"]["timed"] for r in records.values()] == ["in-process", "worker process"]
    for record in records.values():
        assert record["latency"]["1"]["p50_ms"] > 0 and record["threads"] >= 1
        assert record["measured_on"]["latency"]["hostname"] == socket.gethostname()
    # PyTorch keeps its model in memory: the timing task built it again; ONNX Runtime timed the scored file.
    assert "built again on the timing node" in records["pytorch-fp32"]["notes"][-1]
    assert records["onnxruntime-fp32"]["artifact"] == "model.onnx"


def test_ray_missing_is_a_clear_error(tmp_path, tiny_dataset_root, monkeypatch):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(SPEC.format(root=tiny_dataset_root))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does where the extra is not installed
    with pytest.raises(OptimError, match=r"pip install -e '\.\[ray\]'") as error:
        main([str(spec), "--ray"])
    assert error.value.exit_code == 2
    assert not (tmp_path / "reports").exists()  # nothing measured, nothing written


def test_accuracy_only_refuses_what_needs_latency(tmp_path, tiny_dataset_root):
    from optim.spec import ExperimentSpec

    with pytest.raises(ValueError, match="latency.enabled is false"):
        ExperimentSpec.model_validate({"name": "x", "latency": {"enabled": False}, "search": {},
                                       "variants": [{"name": "a"}]})

"""Profiling harness on the tiny random DETR (64x64): stage ranges cost nothing when off and label a
torch.profiler trace when on; the PyTorch, ONNX Runtime and OpenVINO stage breakdowns attribute real time
to backbone / encoder / decoder, add up against the engine's own time, and see INT8 kernels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from optim.engines.base import BuildContext
from optim.engines.registry import create_engine
from optim.errors import OptimError
from optim.eval_data import ExperimentData
from optim.latency import measure
from optim.models.zoo import load_model
from optim.spec import DataSpec, EngineSpec, LatencySpec, ProfileSpec, QuantizeStep, VariantSpec
from profiling.nvtx_ranges import NULL_RANGE, instrument_detr, is_enabled, ranges_enabled, stage
from profiling.run import NVTX_NOTE, iterations_for, profile_variant
from profiling.stages import STAGES, fallback_warning, stage_of_node

SIZE = (64, 64)
BLOCKS = ("backbone", "encoder", "decoder", "heads")
# Stage sum vs plain iterations run around the profiled ones, on a sub-millisecond model whose stage
# timers (a few us per range) are a visible share: loose enough for a busy CI machine, tight enough to
# catch profiler overhead counted as model time (ORT's profiler alone made it 2.5x before it was removed).
COVERAGE_BOUNDS = (0.5, 2.0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread, as the other engines get (BuildContext.threads=1): on a shared CPU, more threads
    than free cores make PyTorch's spinning workers wait for each other, 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_model("tiny-detr-arch").model


@pytest.fixture(scope="module")
def data(tiny_dataset_root) -> ExperimentData:
    return ExperimentData(DataSpec(root=tiny_dataset_root, eval_images=2, calibration_images=2), SIZE, batch_size=2)


def _trace_names(path: Path) -> set[str]:
    return {event.get("name") for event in json.loads(path.read_text())["traceEvents"]}


def _profile(tiny, data, tmp_path, kind: str, method: str | None = None, **profile):
    """Build `kind` (optionally quantized), time it briefly, then profile it as the runner does."""
    steps = [QuantizeStep(kind="quantize", method=method)] if method else []
    variant = VariantSpec(name=f"{kind}-{method or 'fp32'}", engine=EngineSpec(kind=kind), steps=steps)
    engine = create_engine(variant.engine)
    engine.build(tiny, steps[0] if steps else None,
                 BuildContext(workdir=tmp_path / "work", input_size=SIZE, calibration=data.calibration_batches,
                              threads=1))
    try:
        batch = data.example(1)
        p50 = measure(lambda: engine.infer(batch), LatencySpec(warmup_iters=3, min_iters=10, max_iters=20,
                                                               max_seconds=1.0), 1).p50_ms
        stages, files = profile_variant(engine, tiny, variant, ProfileSpec(**profile), data, tmp_path, p50)
    finally:
        engine.close()
    return stages, files, p50


def _check_breakdown(stages: dict, p50: float, timed: tuple[str, ...] = ("backbone", "encoder", "decoder"),
                     remainder: str = "runtime") -> None:
    """Shape and arithmetic every engine's breakdown must satisfy; the `timed` blocks must have time.
    `remainder` is the stage the engine computes as its time left over (PyTorch: other; graph engines: runtime)."""
    assert set(stages["stages_ms"]) == set(STAGES)
    for block in (*timed, "preprocess", "postprocess"):
        assert stages["stages_ms"][block] > 0, block
    assert stages["total_ms"] == pytest.approx(sum(stages["stages_ms"].values()), abs=1e-3)
    assert stages["timed_p50_ms"] == pytest.approx(p50, abs=1e-4)
    engine_stages = sum(ms for name, ms in stages["stages_ms"].items() if name not in ("preprocess", "postprocess"))
    # The stages add up to the engine's time exactly, unless the measured stages (for ONNX Runtime,
    # profiler-corrected node times) already exceed it and the remainder is clamped at 0.
    if stages["stages_ms"][remainder] > 0:
        assert engine_stages == pytest.approx(stages["engine_ms"], abs=1e-3)
    else:
        assert engine_stages >= stages["engine_ms"] - 1e-3
    assert stages["coverage"] == pytest.approx(stages["total_ms"] / stages["end_to_end_ms"], rel=1e-3)
    assert COVERAGE_BOUNDS[0] < stages["coverage"] < COVERAGE_BOUNDS[1], stages
    ops = stages["top_ops"]
    assert 0 < len(ops) <= 15
    assert [op["ms"] for op in ops] == sorted((op["ms"] for op in ops), reverse=True)
    assert {op["stage"] for op in ops} <= set(STAGES)


def test_stage_is_the_shared_nullcontext_when_off(tiny):
    assert not is_enabled()
    assert stage("backbone") is NULL_RANGE
    hooks = instrument_detr(tiny)
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof, torch.no_grad():
            tiny(pixel_values=torch.zeros(1, 3, *SIZE))
    finally:
        hooks.remove()
    labels = {event.name for event in prof.events() if event.is_user_annotation}
    assert not labels & set(BLOCKS), labels


def test_labels_appear_in_the_chrome_trace_when_on(tiny, tmp_path):
    hooks = instrument_detr(tiny)
    try:
        with ranges_enabled(nvtx=True):  # the nvtx package works without a GPU (no-op outside nsys)
            assert stage("x") is not NULL_RANGE
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof, torch.no_grad():
                tiny(pixel_values=torch.zeros(1, 3, *SIZE))
    finally:
        hooks.remove()
    assert stage("x") is NULL_RANGE
    trace = tmp_path / "trace.json"
    prof.export_chrome_trace(str(trace))
    assert set(BLOCKS) <= _trace_names(trace)
    assert not tiny.model.encoder._forward_hooks and not tiny.model.encoder._forward_pre_hooks


def test_pytorch_breakdown_trace_and_pyinstrument(tiny, data, tmp_path):
    stages, files, p50 = _profile(tiny, data, tmp_path, "pytorch", stages=True, torch_profiler=True,
                                  pyinstrument=True)
    _check_breakdown(stages, p50, remainder="other")
    assert stages["stages_ms"]["heads"] > 0
    assert files == {"torch_profiler": "traces/pytorch-fp32.torch.json",
                     "pyinstrument": "traces/pytorch-fp32.pyinstrument.html"}
    trace_names = _trace_names(tmp_path / files["torch_profiler"])
    assert {"backbone", "encoder", "decoder", "preprocess", "postprocess"} <= trace_names
    assert "preprocess_image" in (tmp_path / files["pyinstrument"]).read_text()
    # Every Linear and Conv2d of the tiny DETR counted, none in int8.
    layers = sum(isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) for m in tiny.modules())
    assert (stages["int8_ops"], stages["float_ops"]) == (0, layers)


def test_nvtx_ranges_without_files(tiny, data, tmp_path):
    """NVTX alone writes no file (the ranges go to an nsys capture) and says so in the breakdown's notes."""
    stages, files, _ = _profile(tiny, data, tmp_path, "pytorch", stages=True, nvtx=True)
    assert files == {} and NVTX_NOTE in stages["notes"]
    stages, files, _ = _profile(tiny, data, tmp_path, "pytorch", stages=False, nvtx=True)
    assert (stages, files) == (None, {})
    assert not (tmp_path / "traces").exists()


def test_onnxruntime_breakdown_adds_up_to_the_session_time(tiny, data, tmp_path):
    stages, files, p50 = _profile(tiny, data, tmp_path, "onnxruntime", stages=True)
    # The tiny model's decoder kernels take about as long as the profiler's own cost per node call, which
    # the correction removes: only the backbone is sure to keep time here.
    _check_breakdown(stages, p50, timed=("backbone",))
    nodes_ms = sum(stages["stages_ms"][s] for s in (*BLOCKS, "other"))
    # Node kernels (less the profiler's measured cost) are part of each run: never more than the session's
    # unprofiled run time; on this tiny model ORT's executor overhead (stage runtime) is a large share.
    assert 0 < nodes_ms <= 1.02 * stages["engine_ms"]
    assert stages["stages_ms"]["runtime"] > 0
    assert stages["int8_ops"] == 0 and stages["float_ops"] > 0 and stages["fallback_warning"] is None
    events = json.loads((tmp_path / files["onnxruntime"]).read_text())
    assert any(e.get("name") == "model_run" for e in events)


def test_onnxruntime_int8_model_reports_int8_ops(tiny, data, tmp_path):
    stages, _, p50 = _profile(tiny, data, tmp_path, "onnxruntime", "ort_static", stages=True)
    _check_breakdown(stages, p50, timed=("backbone",))
    assert stages["int8_ops"] > 0
    assert any(op["precision"] == "int8" for op in stages["top_ops"])


def test_openvino_breakdown_adds_up_to_the_inference_time(tiny, data, tmp_path):
    pytest.importorskip("openvino")
    stages, files, p50 = _profile(tiny, data, tmp_path, "openvino", stages=True)
    _check_breakdown(stages, p50)
    layers_ms = sum(stages["stages_ms"][s] for s in (*BLOCKS, "other"))
    assert 0.2 * stages["engine_ms"] < layers_ms <= 1.02 * stages["engine_ms"]
    assert stages["int8_ops"] == 0 and stages["float_ops"] > 0
    counters = json.loads((tmp_path / files["openvino"]).read_text())
    assert {c["stage"] for c in counters} >= {"backbone", "encoder", "decoder"}


def test_stage_of_node_and_fallback_warning():
    assert stage_of_node("/model/model/encoder/layers.0/mlp/fc1/MatMul") == "encoder"
    assert stage_of_node("/model/model/backbone/model/embedder/embedder/convolution/Conv_token_59") == "backbone"
    assert stage_of_node("logits_original") == "heads"
    assert stage_of_node("/model/model/Concat_1") == "other"
    compute = [("a", "backbone", True), ("b", "encoder", False), ("c", "encoder", False), ("d", "heads", True)]
    warning = fallback_warning("int8", compute, [])
    assert warning.startswith("2 of 4 compute ops") and "encoder 2" in warning
    assert fallback_warning("int8", compute, ["encoder"]) is None
    assert fallback_warning("fp32", compute, []) is None
    assert "no effect" in fallback_warning("int8", [("b", "encoder", False)], [])


def test_iterations_follow_the_latency():
    assert iterations_for(0.01) == 20 and iterations_for(10_000) == 5
    assert iterations_for(200) == 10


def test_overhead_command_measures_every_condition(tmp_path):
    """python -m profiling.overhead times plain vs instrumented forwards and writes its verdict as JSON."""
    out = tmp_path / "overhead.json"
    result = subprocess.run([sys.executable, "-m", "profiling.overhead", "--model", "tiny-detr-arch", "--rounds", "3",
                             "--iterations", "3", "--threads", "1", "--out", str(out)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["median_ms"]) == {"plain", "hooks, profiling off", "plain again", "stage timers on"}
    assert all(ms > 0 for ms in report["median_ms"].values())
    assert report["median_change_vs_plain"]["plain"] == 0.0
    assert isinstance(report["profiling_off_within_noise"], bool) and "profiling off is" in result.stdout
    assert report["device"] == "cpu"


def test_nvtx_capture_times_every_stage_inside_its_range():
    """python -m profiling.nvtx_capture: the block ranges nest inside `inference` (as Nsight shows them)."""
    from profiling.nvtx_capture import capture

    stages = capture("tiny-detr-arch", "cpu", iterations=3, warmup=1)
    assert set(stages) == {"preprocess", "inference", "backbone", "encoder", "decoder", "heads", "postprocess"}
    blocks = sum(stages[name] for name in ("backbone", "encoder", "decoder", "heads"))
    assert 0 < blocks <= stages["inference"]
    if not torch.cuda.is_available():
        with pytest.raises(OptimError, match="--device cuda needs a CUDA GPU"):
            capture("tiny-detr-arch", "cuda", iterations=1, warmup=0)


def test_background_load_sees_another_busy_process():
    """A busy child process shows up as background CPU; our own work does not."""
    from optim.machine_load import LoadWindow

    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.5)
        window = LoadWindow.start()
        time.sleep(1.0)
        load = window.finish()
    finally:
        busy.kill()
    assert load is not None and load > 0.5 / os.cpu_count()  # about one core's worth of the machine busy


def test_profile_blocks_are_run_again_until_the_machine_was_steady():
    """plain / profiled / plain is repeated while a speed probe shows the slow state or the plain blocks
    disagree; after ATTEMPTS unsteady tries the reference is marked unsteady and the breakdown says so."""
    from optim.machine_load import SpeedReference
    from profiling.stages import ATTEMPTS, HostTimes, plain_profiled_plain

    def block(ms: float):
        return lambda count, warmup: HostTimes(0.1, ms, 0.1, count)

    slow_then_fast = iter([0.5, 0.7, 0.5, 0.5] + [0.5] * 4)  # the first attempt's second probe is slow
    speed = SpeedReference()
    reference, during = plain_profiled_plain(block(2.0), block(2.2), 5, probe=lambda: next(slow_then_fast),
                                             speed=speed)
    assert reference.steady and reference.infer_ms == 2.0 and during.infer_ms == 2.2
    assert next(slow_then_fast, None) is None  # two attempts: 8 probes

    calls = []

    def drifting(count, warmup):  # the plain blocks never agree
        calls.append(count)
        return HostTimes(0.1, 2.0 * len(calls), 0.1, count)

    reference, _ = plain_profiled_plain(drifting, block(2.2), 5, probe=lambda: 0.5, speed=SpeedReference())
    assert reference.steady is False and len(calls) == 2 * ATTEMPTS

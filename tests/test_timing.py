"""Latency you can trust: the clean timing worker, each engine's own benchmark tool on the same artifact,
the agreement rule, and the machine's matrix-product peaks."""

from __future__ import annotations

import numpy as np
import pytest

from optim.engines.base import BuildContext
from optim.engines.registry import create_engine
from optim.errors import OptimError
from optim.spec import EngineSpec, LatencySpec
from optim.timing.isolated import measure_in_subprocess
from optim.timing.peak import measure_peaks, share_of_peak
from optim.timing.reference import agrees
from optim.timing.variant_latency import measure_variant_latency

SIZE = (64, 64)
QUICK = LatencySpec(warmup_iters=2, min_iters=5, max_iters=40, max_seconds=0.5, threads=1, reference_seconds=0.5)


def _build(kind: str, model, workdir, calibration, **engine):
    built = create_engine(EngineSpec(kind=kind, **engine))
    info = built.build(model, None, BuildContext(workdir=workdir, input_size=SIZE, calibration=calibration,
                                                 threads=1))
    return built, info


@pytest.mark.parametrize("kind", ["onnxruntime", "openvino"])
def test_worker_times_the_artifact_and_the_engine_tool_agrees_on_what_it_ran(kind, model, calibration, images,
                                                                            tmp_path):
    pytest.importorskip(kind)
    engine, info = _build(kind, model, tmp_path, calibration)
    try:
        # The reloaded engine computes what the built one computes.
        reloaded = create_engine(engine.spec)
        reloaded.load(info.artifact, None, threads=1)
        for built, again in zip(engine.infer(images[:1]), reloaded.infer(images[:1])):
            np.testing.assert_allclose(again, built, rtol=0, atol=1e-6)
        inputs = {1: images[:1], 2: images[:2]}
        latency, record = measure_variant_latency(engine, None, info.artifact, inputs, QUICK, None, tmp_path / "timing")
    finally:
        engine.close()
    assert record["timed"] == "worker process"
    assert set(latency) == {"1", "2"}
    for stats in latency.values():
        assert stats["iters"] >= QUICK.min_iters and 0 < stats["min_ms"] <= stats["p50_ms"] <= stats["p99_ms"]
    reference = record["reference"]
    assert "error" not in reference, reference
    assert reference["tool"] == {"onnxruntime": "onnxruntime_test", "openvino": "benchmark_app"}[kind]
    assert reference["reference_ms"] > 0 and len(reference["rounds"]) == 1
    assert reference["ratio"] == pytest.approx(reference["rounds"][0]["lab_ms"] / reference["reference_ms"], rel=1e-2)
    assert str(info.artifact) in reference["rounds"][0]["command"]


def test_pytorch_is_timed_in_process_against_torch_benchmark(model, images, tmp_path):
    engine, info = _build("pytorch", model, tmp_path, [])
    latency, record = measure_variant_latency(engine, None, info.artifact, {1: images[:1]},
                                              QUICK.model_copy(update={"reference_rounds": 2}), None, tmp_path)
    assert record["timed"] == "in-process" and set(latency) == {"1"}
    assert record["reference"]["tool"] == "torch.utils.benchmark"
    assert len(record["reference"]["rounds"]) == 2  # lab and tool alternate: the second lab figure is new
    assert record["reference"]["rounds"][1]["lab_ms"] != record["reference"]["rounds"][0]["lab_ms"]


def test_isolate_off_times_in_process(model, calibration, images, tmp_path):
    pytest.importorskip("onnxruntime")
    engine, info = _build("onnxruntime", model, tmp_path, calibration)
    latency, record = measure_variant_latency(engine, None, info.artifact, {1: images[:1]},
                                              QUICK.model_copy(update={"isolate": False, "reference": False}),
                                              None, tmp_path)
    engine.close()
    assert record == {"timed": "in-process", "reference": None} and latency["1"]["iters"] >= QUICK.min_iters


def test_a_failing_worker_names_the_artifact_and_shows_its_output(tmp_path):
    pytest.importorskip("onnxruntime")
    corrupt = tmp_path / "model.onnx"
    corrupt.write_bytes(b"not an onnx file")
    with pytest.raises(OptimError, match="timing worker failed") as error:
        measure_in_subprocess(EngineSpec(kind="onnxruntime"), corrupt, None, {1: np.zeros((1, 3, *SIZE), np.float32)},
                              QUICK, tmp_path / "timing")
    assert "model.onnx" in str(error.value) and "corrupt or invalid ONNX" in str(error.value)


def test_a_failing_reference_tool_is_recorded_not_fatal(model, images, tmp_path):
    pytest.importorskip("onnxruntime")
    engine, info = _build("onnxruntime", model, tmp_path, [])
    inputs = {1: images[:1]}
    latency, record = measure_variant_latency(engine, None, info.artifact, inputs,
                                              QUICK.model_copy(update={"isolate": False}), None, tmp_path)
    assert record["reference"]["tool"] == "onnxruntime_test"
    info.artifact.write_bytes(b"gone")  # the tool now reads a corrupt file
    _, record = measure_variant_latency(engine, None, info.artifact, inputs, QUICK.model_copy(update={"isolate": False}),
                                        None, tmp_path)
    engine.close()
    assert "onnxruntime_test failed" in record["reference"]["error"] and latency["1"]["p50_ms"] > 0


def test_agreement_band_is_15_percent_either_way():
    assert agrees(1.0) and agrees(1.149) and agrees(1 / 1.149)
    assert not agrees(1.16) and not agrees(0.86)


def test_peaks_and_share_of_peak():
    peaks = measure_peaks(threads=1)
    assert peaks["fp32"] > 1e9 and peaks["bf16"] > 0
    share = share_of_peak(flops_per_image=2e9, batch_size=1, p50_ms=10.0, precision="int8", peaks=peaks)
    assert share["achieved_ops"] == pytest.approx(2e11, rel=1e-3)
    assert share["peak_precision"] == ("int8" if "int8" in peaks else "fp32")
    assert share["share"] == pytest.approx(2e11 / share["peak_ops"], rel=1e-3)
    assert share_of_peak(2e9, 1, 10.0, "fp16", peaks)["peak_precision"] == "fp32"
    assert share_of_peak(0, 1, 10.0, "fp32", peaks) is None

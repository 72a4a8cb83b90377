"""A variant's latency: timed in a clean worker process when its engine runs from a file, in-process
otherwise, then cross-checked against the engine's own benchmark tool (interleaved rounds at batch 1)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from optim.latency import measure
from optim.spec import LatencySpec, QuantizeStep
from optim.timing.isolated import measure_in_subprocess
from optim.timing.reference import agrees, reference_figure

TIMING_TEXT = ("Engines that run from a file (ONNX Runtime, OpenVINO) are timed in a fresh worker process that loads "
               "only that engine and artifact, so no other runtime's threads share the cores; PyTorch engines are "
               "timed in the run's process. OpenVINO runs a model compiled for each input shape (static batch), as "
               "a deployment and benchmark_app do. Cross-check at the first batch size: the engine's own tool on the "
               "same artifact and settings, {seconds:g} s a run, alternating with the lab's timing {rounds} time(s) "
               "(OpenVINO benchmark_app, latency hint, median; ONNX Runtime's onnxruntime_test, default session "
               "options, mean; torch.utils.benchmark blocked_autorange, median); the ratio is lab / tool for the "
               "same statistic, the median over rounds, flagged outside 0.87-1.15.")


def time_batches(engine, quantize: QuantizeStep | None, artifact: Path | None, inputs: dict[int, np.ndarray],
                 latency: LatencySpec, synchronize: Callable[[], None] | None,
                 workdir: Path) -> tuple[dict[str, dict], str]:
    """LatencyStats dicts per batch size and where they were timed ("worker process" or "in-process")."""
    if latency.isolate and artifact is not None and engine.artifact_in(workdir, quantize) is not None:
        return measure_in_subprocess(engine.spec, artifact, quantize, inputs, latency, workdir), "worker process"
    return {str(size): measure(lambda batch=batch: engine.infer(batch), latency, size, synchronize).as_dict()
            for size, batch in inputs.items()}, "in-process"


def measure_variant_latency(engine, quantize: QuantizeStep | None, artifact: Path | None,
                            inputs: dict[int, np.ndarray], latency: LatencySpec,
                            synchronize: Callable[[], None] | None, workdir: Path) -> tuple[dict, dict]:
    """(latency per batch size, timing record). The record says where the lab timed and, when the spec asks
    for it, each reference round at the first batch size (lab, then the engine's own tool) and the median
    lab / reference ratio; a reference tool that fails is recorded with its reason, never fails the variant."""
    results, where = time_batches(engine, quantize, artifact, inputs, latency, synchronize, workdir)
    record: dict = {"timed": where, "reference": None}
    if not latency.reference:
        return results, record
    size = min(inputs)
    batch = inputs[size]
    rounds = []
    try:
        for index in range(latency.reference_rounds):
            lab = results[str(size)] if index == 0 else time_batches(engine, quantize, artifact, {size: batch},
                                                                     latency, synchronize, workdir)[0][str(size)]
            figure = reference_figure(engine, artifact, tuple(batch.shape), lab, latency,
                                      lambda: engine.infer(batch))
            if figure is None:
                return results, record
            rounds.append(figure.as_dict())
    except Exception as error:  # noqa: BLE001 -- a reference tool's failure is a note, not a failed variant
        record["reference"] = {"error": f"{type(error).__name__}: {error}", "rounds": rounds}
        return results, record
    median = float(np.median([r["ratio"] for r in rounds]))
    record["reference"] = {"batch_size": size, "tool": rounds[0]["tool"], "statistic": rounds[0]["statistic"],
                           "reference_ms": float(np.median([r["reference_ms"] for r in rounds])),
                           "ratio": round(median, 3), "agrees": agrees(median), "rounds": rounds}
    return results, record

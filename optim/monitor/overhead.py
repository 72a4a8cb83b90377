"""What monitoring costs: the same frames through the pipeline with metrics and drift statistics and without,
interleaved request by request (batch 1, one engine), timed around the whole call."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from optim.monitor.drift import DriftConfig, DriftMonitor, Reference
from optim.monitor.metrics import DetectorMetrics, Identity
from optim.monitor.pipeline import MonitoredPipeline
from optim.monitor.stream import synthetic_stream
from optim.monitor.targets import class_names


def measure_overhead(repository: Path, manifest: dict, reference: Reference, rounds: int = 1000,
                     threads: int = 0, seed: int = 3) -> dict:
    """p50 and p99 (ms) with and without monitoring over `rounds` interleaved pairs (the order within a pair
    alternates so that neither side always runs second), and the median paired difference over the p50."""
    from optim.serving.engine import load_engine

    engine = load_engine(repository, manifest, threads)
    size = tuple(manifest["input_size"])
    metrics = DetectorMetrics(Identity.of_repository(repository), class_names(manifest))
    monitored = MonitoredPipeline(engine, size, metrics, DriftMonitor(reference, DriftConfig(), metrics))
    plain = MonitoredPipeline(engine, size)
    frames = [f.encoded() for f in synthetic_stream(64, seed)]
    for data in frames[:16]:  # warm-up both
        monitored.run([data])
        plain.run([data])
    times: dict[str, list[float]] = {"with": [], "without": []}
    for index in range(rounds):
        data = frames[index % len(frames)]
        order = [("with", monitored), ("without", plain)]
        for name, pipeline in order if index % 2 else order[::-1]:
            start = time.perf_counter()
            pipeline.run([data])
            times[name].append(time.perf_counter() - start)
    result = {name: {"p50_ms": float(np.percentile(v, 50) * 1000), "p99_ms": float(np.percentile(v, 99) * 1000)}
              for name, v in times.items()}
    result["rounds"] = rounds
    result["p50_overhead"] = result["with"]["p50_ms"] / result["without"]["p50_ms"] - 1
    # Paired: the two calls of a round ran back to back under the same machine load.
    paired = np.median(np.subtract(times["with"], times["without"]))
    result["paired_median_overhead_ms"] = float(paired * 1000)
    result["paired_overhead"] = float(paired * 1000 / result["without"]["p50_ms"])
    return result

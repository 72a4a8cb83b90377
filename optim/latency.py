"""Latency measurement: warm-up, then timed iterations bounded by count and time, synchronized on CUDA."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from optim.machine_load import LoadWindow, speed_probe_ms
from optim.spec import LatencySpec

METHOD_TEXT = ("Latency: per batch size, {warmup} untimed warm-up iterations, then timed iterations until "
               "{max_seconds:g} s or {max_iters} iterations have passed (at least {min_iters}); each iteration is "
               "one engine call on a fixed preprocessed batch (pre/post-processing excluded, measured separately "
               "in the stage profile), timed with time.perf_counter (CUDA synchronized before and after on GPU). "
               "Throughput = batch size / mean latency. First-inference time = the first call after build. "
               "Background load = CPU time other processes used while timing, per core (Linux /proc/stat); "
               "probe = a fixed matrix product on every core timed just before, the machine's speed at that moment.")


@dataclass
class LatencyStats:
    """Summary of one batch size's timed iterations (milliseconds)."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    iters: int
    throughput_ips: float
    samples_ms: list[float]
    background_cpu: float | None = None  # other processes' CPU share while timing (optim.machine_load)
    probe_ms: float | None = None  # the machine speed probe just before timing (optim.machine_load)

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def summarize(samples_s: list[float], batch_size: int) -> LatencyStats:
    """Percentiles, mean and spread of per-iteration times."""
    ms = np.asarray(samples_s) * 1000.0
    mean = float(ms.mean())
    return LatencyStats(p50_ms=float(np.percentile(ms, 50)), p90_ms=float(np.percentile(ms, 90)),
                        p99_ms=float(np.percentile(ms, 99)), mean_ms=mean, std_ms=float(ms.std()),
                        min_ms=float(ms.min()), iters=len(ms), throughput_ips=batch_size * 1000.0 / mean,
                        samples_ms=[round(float(v), 4) for v in ms])


def measure(call: Callable[[], object], spec: LatencySpec, batch_size: int, synchronize: Callable[[], None] | None = None) -> LatencyStats:
    """Time `call` after `spec.warmup_iters` warm-up calls, within the spec's count and time bounds."""
    sync = synchronize or (lambda: None)
    for _ in range(spec.warmup_iters):
        call()
    sync()
    probe = speed_probe_ms()
    load = LoadWindow.start()
    samples: list[float] = []
    deadline = time.perf_counter() + spec.max_seconds
    while len(samples) < spec.max_iters and (len(samples) < spec.min_iters or time.perf_counter() < deadline):
        start = time.perf_counter()
        call()
        sync()
        samples.append(time.perf_counter() - start)
    stats = summarize(samples, batch_size)
    stats.background_cpu = load.finish()
    stats.probe_ms = probe
    return stats

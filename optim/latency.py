"""Latency measurement: warm-up, then timed iterations bounded by count and time, synchronized on CUDA."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from optim.machine_load import MACHINE_SPEED, LoadWindow, SpeedReference, speed_probe_ms
from optim.spec import LatencySpec

METHOD_TEXT = ("Latency: per batch size, {warmup} untimed warm-up iterations, then timed iterations until "
               "{max_seconds:g} s or {max_iters} iterations have passed (at least {min_iters}); each iteration is "
               "one engine call on a fixed preprocessed batch (pre/post-processing excluded, measured separately "
               "in the stage profile), timed with time.perf_counter (CUDA synchronized before and after on GPU). "
               "Iterations run in chunks of ~0.5 s with a machine speed probe (a fixed matrix product on every "
               "core) between chunks; only chunks with the machine in its steady (fast) state on both sides count (a probe "
               "within 10 % of the median of the 20 fastest probes the process has seen), "
               "and while it is slow timing goes on up to {steady_wait:g}x longer to collect them (a figure timed "
               "with the machine slow throughout is marked unsteady). "
               "Throughput = batch size / mean latency. First-inference time = the first call after build. "
               "Background load = CPU time other processes used while timing, per core (Linux /proc/stat).")
CHUNK_SECONDS = 0.5  # timed iterations between two speed probes


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
    probe_ms: float | None = None  # median speed probe around the chunks used (optim.machine_load)
    probe_fastest_ms: float | None = None  # the machine's fast state (optim.machine_load.SpeedReference)
    steady: bool | None = None  # False: not enough steady-state samples, so every sample was used
    steady_fraction: float | None = None  # share of the timed iterations that ran in the steady state

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


def measure(call: Callable[[], object], spec: LatencySpec, batch_size: int, synchronize: Callable[[], None] | None = None,
            speed: SpeedReference = MACHINE_SPEED, probe: Callable[[], float] = speed_probe_ms) -> LatencyStats:
    """Time `call` after `spec.warmup_iters` warm-up calls, within the spec's count and time bounds, keeping the
    iterations timed while the machine was in its steady state (see METHOD_TEXT; `probe` and `speed` are the
    machine speed probe and the fast-state reference it is judged against)."""
    sync = synchronize or (lambda: None)
    for _ in range(spec.warmup_iters):
        call()
    sync()
    load = LoadWindow.start()
    probes: list[float] = []
    chunks: list[list[float]] = []
    steady_count, steady_seconds = 0, 0.0
    give_up = time.perf_counter() + spec.max_seconds * (1.0 + spec.steady_wait)
    while True:
        probes.append(probe())
        speed.observe(probes[-1])
        if chunks and speed.is_steady(probes[-2]) and speed.is_steady(probes[-1]):
            steady_count += len(chunks[-1])
            steady_seconds += sum(chunks[-1])
        timed = sum(len(chunk) for chunk in chunks)
        if (steady_count >= spec.max_iters or (steady_count >= spec.min_iters and steady_seconds >= spec.max_seconds)
                or (timed >= spec.min_iters and time.perf_counter() >= give_up)):
            break
        chunks.append(_timed_chunk(call, sync, spec.max_iters - steady_count))
    return _summarize_chunks(chunks, probes, speed, spec.min_iters, batch_size, load.finish())


def _timed_chunk(call: Callable[[], object], sync: Callable[[], None], at_most: int) -> list[float]:
    """Seconds of each of up to `at_most` calls made within about CHUNK_SECONDS (at least one call)."""
    samples: list[float] = []
    end = time.perf_counter() + CHUNK_SECONDS
    while len(samples) < max(at_most, 1) and (not samples or time.perf_counter() < end):
        start = time.perf_counter()
        call()
        sync()
        samples.append(time.perf_counter() - start)
    return samples


def _summarize_chunks(chunks: list[list[float]], probes: list[float], speed: SpeedReference, min_iters: int,
                      batch_size: int, background_cpu: float | None) -> LatencyStats:
    """Stats of the steady chunks (probes on both sides steady, judged against the final fast state), or of
    every chunk when they hold fewer than `min_iters` samples."""
    steady = [speed.is_steady(probes[k]) and speed.is_steady(probes[k + 1]) for k in range(len(chunks))]
    steady_samples = [s for chunk, ok in zip(chunks, steady) if ok for s in chunk]
    everything = [s for chunk in chunks for s in chunk]
    used_steady = len(steady_samples) >= min_iters
    used = [k for k, ok in enumerate(steady) if ok or not used_steady]
    stats = summarize(steady_samples if used_steady else everything, batch_size)
    stats.background_cpu = background_cpu
    stats.probe_ms = round(float(np.median([probes[k] for k in used])), 4)
    stats.probe_fastest_ms = speed.fastest_ms
    stats.steady = used_steady
    stats.steady_fraction = round(len(steady_samples) / len(everything), 3)
    return stats

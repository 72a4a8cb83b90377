"""Tuning of parallel settings: every threads x streams x batch x in-flight combination of a grid, each fed
preprocessed batches as fast as it takes them for a short while. Each point: throughput (frames/s) and the
p99 of its request latency (submit -> done) at that load, which is what the setting costs a frame before any
queueing: the throughput-against-latency curve the report draws."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import numpy as np

from optim.parallel.runners import AsyncRunner, ParallelSettings

GRID_KEYS = ("threads", "streams", "batch", "inflight")


def grid_settings(grid: dict[str, list[int]]) -> list[ParallelSettings]:
    """The settings of `grid` (a missing key keeps ParallelSettings' default); streams > in-flight requests
    are left out (a stream without a request to run idles)."""
    values = [grid.get(key) or [getattr(ParallelSettings(), key)] for key in GRID_KEYS]
    settings = [ParallelSettings(*combo) for combo in itertools.product(*values)]
    return [s for s in settings if s.streams <= s.inflight]


def measure_point(runner: AsyncRunner, samples: np.ndarray, seconds: float) -> dict:
    """Throughput and request latency of `runner` kept full for `seconds` (closed afterwards)."""
    size = runner.settings.batch
    batches = [samples[i:i + size] for i in range(0, len(samples) - size + 1, size)]
    try:
        runner.submit(batches[0], lambda *_: None)  # warm-up (first request compiles/allocates)
        runner.wait()
        runner.request_ms.clear()
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            runner.submit(batches[count % len(batches)], lambda *_: None)
            count += 1
        runner.wait()
        wall = time.perf_counter() - start
    finally:
        runner.close()
    return {"settings": runner.settings.as_dict(), "label": runner.settings.label(),
            "throughput_fps": count * size / wall, "p50_ms": float(np.percentile(runner.request_ms, 50)),
            "p99_ms": float(np.percentile(runner.request_ms, 99)), "requests": count}


def tune(make_runner: Callable[[ParallelSettings], AsyncRunner], samples: np.ndarray, grid: dict[str, list[int]],
         seconds: float) -> list[dict]:
    """One point per setting of `grid`, in grid order."""
    return [measure_point(make_runner(settings), samples, seconds) for settings in grid_settings(grid)]

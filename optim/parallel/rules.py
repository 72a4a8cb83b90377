"""Scenario rules, as MLPerf Inference defines them, kept free of any engine so that they are unit-tested:
fixed-rate frame schedules, deadline accounting, Poisson inter-arrival checks and the searches over load."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

ON_TIME_SHARE = 0.99  # MultiStream: a stream is served when at least this share of its frames is on time
SERVER_PERCENTILE = 99.0  # Server: the latency percentile bounded by the target


def frame_schedule(fps: float, count: int, start: float = 0.0) -> np.ndarray:
    """Arrival times of `count` frames of a camera at `fps`: start, start + 1/fps, ..."""
    if fps <= 0:
        raise ValueError("fps must be > 0")
    return start + np.arange(count) / fps


def on_time(arrivals: Sequence[float], done: Sequence[float], deadline_s: float) -> np.ndarray:
    """Which frames finished within `deadline_s` of their scheduled arrival (a frame never finished: NaN)."""
    latency = np.asarray(done, dtype=float) - np.asarray(arrivals, dtype=float)
    return np.nan_to_num(latency, nan=np.inf) <= deadline_s


def on_time_share(arrivals: Sequence[float], done: Sequence[float], deadline_s: float, sent: int | None = None) -> float:
    """Share of the `sent` frames (default: those given) that finished on time; dropped frames count as late."""
    total = len(arrivals) if sent is None else sent
    return float(on_time(arrivals, done, deadline_s).sum()) / total if total else 0.0


def interarrival_stats(issue_times: Sequence[float]) -> dict[str, float]:
    """Mean and coefficient of variation of the gaps between arrivals (a Poisson process: CV ~ 1)."""
    gaps = np.diff(np.sort(np.asarray(issue_times, dtype=float)))
    mean = float(gaps.mean())
    return {"mean_s": mean, "cv": float(gaps.std() / mean), "rate": 1.0 / mean}


def most_streams(served: Callable[[int], bool], limit: int) -> int:
    """The largest N in 1..limit with served(N), stepping up until the first failure (0 if 1 fails)."""
    best = 0
    for streams in range(1, limit + 1):
        if not served(streams):
            break
        best = streams
    return best


def highest_rate(meets: Callable[[float], bool], low: float, high: float, steps: int = 5) -> float:
    """The highest rate in [low, high] with meets(rate), by bisection (0.0 when `low` fails too)."""
    if not meets(low):
        return 0.0
    if meets(high):
        return high
    for _ in range(steps):
        middle = (low + high) / 2
        low, high = (middle, high) if meets(middle) else (low, middle)
    return low

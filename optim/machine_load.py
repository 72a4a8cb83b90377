"""The machine's state while we timed something: CPU time other processes used, and a speed probe.

On a shared or small machine the dominant latency noise is not sampling spread but other work stealing
cores (a busy sibling hyperthread slows a 2-vCPU machine by tens of percent). Linux only: /proc/stat gives
the machine's busy time, `os.times()` this process's own; the difference, per core and second of wall
time, is the background load (0 = idle apart from us, 1 = every core fully busy with other work). The
speed probe (`speed_probe_ms`) times a fixed workload.
"""

from __future__ import annotations

import bisect
import os
import statistics
import time
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
BUSY_WARNING = 0.10  # background load above which a latency figure is flagged as measured on a busy machine


def _machine_busy_seconds() -> float | None:
    """CPU seconds all cores spent busy since boot (not idle, not waiting for I/O), or None off Linux."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    ticks = [int(value) for value in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / CLOCK_TICKS


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class LoadWindow:
    """A started measurement of background load; `finish()` returns the fraction (or None off Linux)."""

    wall: float
    busy: float | None
    own: float

    @classmethod
    def start(cls) -> LoadWindow:
        return cls(time.perf_counter(), _machine_busy_seconds(), _own_seconds())

    def finish(self) -> float | None:
        busy = _machine_busy_seconds()
        elapsed = time.perf_counter() - self.wall
        if busy is None or self.busy is None or elapsed <= 0:
            return None
        others = (busy - self.busy) - (_own_seconds() - self.own)
        return round(min(max(others / (elapsed * (os.cpu_count() or 1)), 0.0), 1.0), 3)


PROBE_SIZE = 384  # a 384x384x384 float32 matrix product: ~0.6-0.7 ms on the lab's two vCPUs (measured)
PROBE_ITERS = 25
PROBE_TOLERANCE = 0.15  # compare reports a probe that moved more than this against the reference runs'
# A probe within this of the machine's fast state counts as steady. On the lab's first VM (AMD EPYC) the probe sat at
# 0.56-0.60 ms in the fast state and 0.69-0.74 ms in the slow one, where a 2-thread ONNX Runtime session runs ~45 %
# slower (measured: correlation 0.98 between the two over 40 interleaved blocks).
STEADY_TOLERANCE = 0.10
# The fast state is the median of this many fastest probes: on the current VM an idle second of probes spans
# 0.305-0.36 ms (median 0.327), and one probe of 0.288 ms once made the minimum a reference that nearly every
# later probe missed by more than STEADY_TOLERANCE (18 of 20 figures of a quiet run marked unsteady).
FAST_STATE_PROBES = 20


class SpeedReference:
    """The machine's fast state — the median of the fastest FAST_STATE_PROBES speed probes seen in this process —
    against which the probe before and after each timed chunk of a latency measurement is judged."""

    def __init__(self) -> None:
        self._fastest: list[float] = []  # ascending, at most FAST_STATE_PROBES

    def observe(self, probe_ms: float) -> None:
        bisect.insort(self._fastest, probe_ms)
        del self._fastest[FAST_STATE_PROBES:]

    @property
    def fastest_ms(self) -> float | None:
        """The fast state's probe time (ms), or None before any probe."""
        return statistics.median(self._fastest) if self._fastest else None

    @property
    def fastest_probes(self) -> list[float]:
        """The fastest probes seen (what another process can start from, see `observe`)."""
        return list(self._fastest)

    def is_steady(self, probe_ms: float) -> bool:
        """Whether `probe_ms` is within STEADY_TOLERANCE of the fast state."""
        return self.fastest_ms is not None and probe_ms <= self.fastest_ms * (1.0 + STEADY_TOLERANCE)

    def calibrate(self, seconds: float) -> None:
        """Probe for about `seconds`, so the fast state has been seen before anything is timed."""
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            self.observe(speed_probe_ms())


MACHINE_SPEED = SpeedReference()  # shared by every measurement of the process


def speed_probe_ms() -> float:
    """Median ms of a fixed workload on every core: the machine's speed at this moment.

    Cloud vCPUs slow down for seconds at a time (a neighbour on the same physical core, frequency changes)
    in ways no process list shows. `optim.latency` runs this between chunks of timed iterations and keeps
    the chunks timed in the fast state (see SpeedReference); every latency figure records it. It always uses
    every core, whatever the experiment's thread setting."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(PROBE_SIZE, PROBE_SIZE, generator=generator)
        b = torch.randn(PROBE_SIZE, PROBE_SIZE, generator=generator)
        samples = []
        for index in range(PROBE_ITERS + 3):
            start = time.perf_counter()
            torch.mm(a, b)
            if index >= 3:
                samples.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    samples.sort()
    return round(1000.0 * samples[len(samples) // 2], 4)

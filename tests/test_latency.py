"""Latency timing in chunks between machine speed probes: chunks timed while the machine was slow (a probe on
either side above the machine's fast state by more than STEADY_TOLERANCE) are set aside, timing waits for the fast
state up to `steady_wait`, and a figure timed slow throughout is kept but marked unsteady. A fake machine whose
speed the test controls stands in for the VM's fast and slow states."""

from __future__ import annotations

import time

import pytest

from optim.latency import measure
from optim.machine_load import FAST_STATE_PROBES, SpeedReference
from optim.spec import LatencySpec


class FakeMachine:
    """A machine that is fast (probe 0.5 ms, call 1 ms) or slow (probe 0.65 ms, call 3 ms), switching state
    after a given number of probes."""

    def __init__(self, states: list[str]):
        self.states = states  # one per probe; the last repeats
        self.probes = 0
        self.slow = False

    def probe(self) -> float:
        state = self.states[min(self.probes, len(self.states) - 1)]
        self.probes += 1
        self.slow = state == "slow"
        return 0.65 if self.slow else 0.5

    def call(self) -> None:
        time.sleep(0.003 if self.slow else 0.001)


SPEC = LatencySpec(warmup_iters=0, min_iters=20, max_iters=10_000, max_seconds=0.4, steady_wait=2.0)


def test_slow_chunks_are_set_aside_and_timing_waits_for_the_fast_state():
    machine = FakeMachine(["fast", "slow", "fast"])  # chunks: fast->slow, slow->fast (both set aside), fast
    stats = measure(machine.call, SPEC, 1, speed=SpeedReference(), probe=machine.probe)
    assert stats.steady and 0 < stats.steady_fraction < 1
    assert stats.p50_ms == pytest.approx(1.0, abs=0.5)  # the fast state's 1 ms calls only
    assert stats.probe_ms == 0.5 and stats.probe_fastest_ms == 0.5
    # 0.4 s of steady calls were collected although two 0.5 s chunks had to be set aside first.
    assert sum(stats.samples_ms) / 1000 >= SPEC.max_seconds


def test_a_machine_slow_throughout_gives_an_unsteady_figure_after_the_wait():
    machine = FakeMachine(["slow"])
    speed = SpeedReference()
    for _ in range(FAST_STATE_PROBES):  # the fast state was seen earlier in the process (the runner calibrates first)
        speed.observe(0.5)
    start = time.perf_counter()
    stats = measure(machine.call, SPEC, 1, speed=speed, probe=machine.probe)
    elapsed = time.perf_counter() - start
    assert not stats.steady and stats.steady_fraction == 0
    assert stats.p50_ms == pytest.approx(3.0, abs=1.0) and stats.probe_ms == 0.65
    assert SPEC.max_seconds * (1 + SPEC.steady_wait) <= elapsed < SPEC.max_seconds * (1 + SPEC.steady_wait) + 1.0


def test_a_steady_machine_times_as_before():
    machine = FakeMachine(["fast"])
    spec = LatencySpec(warmup_iters=2, min_iters=5, max_iters=50, max_seconds=10.0)
    stats = measure(machine.call, spec, 4, speed=SpeedReference(), probe=machine.probe)
    assert stats.iters == 50 and stats.steady and stats.steady_fraction == 1.0  # max_iters bound, no extra wait
    assert stats.throughput_ips == pytest.approx(4 * 1000 / stats.mean_ms)


def test_one_unusually_fast_probe_does_not_make_the_machine_look_slow():
    speed = SpeedReference()
    for probe_ms in [0.288, *[0.31 + 0.001 * k for k in range(40)]]:  # one outlier among an idle machine's probes
        speed.observe(probe_ms)
    assert speed.fastest_ms == pytest.approx(0.3185, abs=1e-4)  # median of the 20 fastest, outlier included
    assert speed.is_steady(0.34) and not speed.is_steady(0.36)

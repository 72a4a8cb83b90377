"""Scenario rules: fixed-rate schedules, deadline accounting, load searches, LoadGen's Poisson arrivals and
the pipeline's fault accounting."""

from __future__ import annotations

import numpy as np
import pytest

from optim.parallel.rules import frame_schedule, highest_rate, interarrival_stats, most_streams, on_time, on_time_share


def test_frame_schedule_is_evenly_spaced_at_the_rate():
    times = frame_schedule(30.0, 4, start=1.0)
    assert np.allclose(times, [1.0, 1 + 1 / 30, 1 + 2 / 30, 1 + 3 / 30])
    with pytest.raises(ValueError):
        frame_schedule(0, 3)


def test_deadline_counts_from_the_scheduled_arrival_and_dropped_frames_are_late():
    arrivals = [0.0, 0.1, 0.2, 0.3]
    done = [0.03, 0.14, float("nan"), 0.333]  # on time, late by 7 ms, never finished, exactly at the deadline
    assert on_time(arrivals, done, 1 / 30).tolist() == [True, False, False, True]
    assert on_time_share(arrivals, done, 1 / 30) == 0.5
    # Frames sent but never finished (absent from `done`) count against the share.
    assert on_time_share(arrivals[:2], done[:2], 1 / 30, sent=4) == 0.25
    assert on_time_share([], [], 0.03, sent=0) == 0.0


def test_most_streams_stops_at_the_first_failure():
    assert most_streams(lambda n: n <= 3, 8) == 3
    assert most_streams(lambda n: False, 8) == 0
    assert most_streams(lambda n: True, 5) == 5
    assert most_streams(lambda n: n != 2, 8) == 1  # a failure ends the search even if more would pass


def test_highest_rate_bisects_to_the_boundary():
    assert highest_rate(lambda r: r <= 37.0, 5.0, 200.0, steps=10) == pytest.approx(37.0, abs=0.5)
    assert highest_rate(lambda r: False, 5.0, 200.0) == 0.0
    assert highest_rate(lambda r: True, 5.0, 200.0) == 200.0


def test_interarrival_stats_tell_poisson_from_fixed_rate():
    rng = np.random.default_rng(0)
    poisson = np.cumsum(rng.exponential(1 / 50, size=4000))
    stats = interarrival_stats(poisson)
    assert stats["rate"] == pytest.approx(50, rel=0.05) and stats["cv"] == pytest.approx(1.0, abs=0.05)
    assert interarrival_stats(frame_schedule(50, 100))["cv"] < 1e-6


def test_loadgen_server_issues_poisson_arrivals_at_the_target_rate():
    """LoadGen (the real library) drives the Server scenario: its arrivals must be a Poisson process."""
    pytest.importorskip("mlperf_loadgen", reason="needs the 'parallel' extra (mlcommons-loadgen)")
    from optim.parallel.loadgen_run import LoadGenRun, run_loadgen
    from optim.parallel.runners import AsyncRunner, ParallelSettings

    class Echo(AsyncRunner):  # the arrival process is under test here, not an engine: answer at once
        def run(self, batch, slot):
            return batch[:, :1], batch[:, :1]

    samples = np.zeros((8, 3, 4, 4), np.float32)
    result = run_loadgen(Echo(ParallelSettings(1, 1, 1, 2)), samples,
                         LoadGenRun("server", seconds=2.0, server_rate=200.0, latency_bound_ms=50))
    stats = interarrival_stats(result["issue_times"])
    assert result["samples"] >= 300
    assert stats["rate"] == pytest.approx(200, rel=0.2)
    assert stats["cv"] == pytest.approx(1.0, abs=0.25)


def test_video_files_give_their_frames_and_bad_ones_a_clear_error(tmp_path):
    from PIL import Image

    from optim.errors import OptimError
    from optim.parallel.sources import Faults, decode, file_frames, stream_frames

    frames = [Image.new("RGB", (32, 24), (40 * i, 0, 0)) for i in range(3)]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:], duration=33)
    clip = file_frames(tmp_path / "clip.gif")
    assert len(clip) == 3 and decode(clip[0]).size == (32, 24)
    (tmp_path / "broken.gif").write_bytes(b"GIF89a not really")
    with pytest.raises(OptimError, match="broken.gif"):
        file_frames(tmp_path / "broken.gif")
    sent = list(stream_frames(clip, 7, Faults(end_after=5, stall_at=1, corrupt_every=2)))
    assert [i for i, data in sent if data is None] == [1]  # the stall marker comes before frame 1
    assert [i for i, data in sent if data is not None] == [0, 1, 2, 3, 4]
    corrupt = [i for i, data in sent if data is not None and data != clip[i % 3]]
    assert corrupt == [1, 3]
    with pytest.raises(OSError):
        decode(sent[2][1])

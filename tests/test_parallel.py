"""The parallel pipeline and each MLPerf scenario, end to end on the shipped model with real engines
(OpenVINO's AsyncInferQueue, ONNX Runtime sessions, PyTorch threads) and real LoadGen; seconds each."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("mlperf_loadgen", reason="needs the 'parallel' extra (mlcommons-loadgen)")

from optim.parallel.__main__ import build_engine, main
from optim.parallel.measure import Measurement, ScenarioSettings
from optim.parallel.pipeline import STAGES, Pipeline, StreamSpec
from optim.parallel.runners import ParallelSettings, create_runner
from optim.parallel.sources import Faults, synthetic_clip

QUICK = ScenarioSettings(seconds=0.4, max_streams=2, server_max_rate=40.0,
                         grid={"threads": [2], "streams": [1], "batch": [1, 2], "inflight": [1, 2]})


@pytest.fixture(scope="module")
def openvino_engine(tmp_path_factory):
    engine, artifact, size = build_engine("openvino", tmp_path_factory.mktemp("ov"))
    yield engine, artifact, size
    engine.close()


@pytest.mark.parametrize("kind", ["openvino", "onnxruntime", "pytorch"])
def test_runner_matches_the_engine(kind, tmp_path):
    """Each engine's parallel runner returns what engine.infer returns, whatever the batch it gets."""
    engine, artifact, size = build_engine(kind, tmp_path)
    clip = synthetic_clip(0, frames=3, size=size[0])
    from optim.data.transforms import preprocess_image
    from optim.parallel.sources import decode

    pixels = np.stack([preprocess_image(decode(data), size).numpy() for data in clip])
    expected = engine.infer(pixels)
    runner = create_runner(engine, artifact, size, ParallelSettings(threads=2, streams=2, batch=4, inflight=2))
    got = {}
    runner.submit(pixels, lambda logits, boxes: got.update(logits=logits, boxes=boxes))
    runner.wait()
    runner.close()
    engine.close()
    assert got["logits"].shape == expected[0].shape  # padded to the static batch of 4, cut back to 3
    np.testing.assert_allclose(got["logits"], expected[0], atol=1e-3)
    np.testing.assert_allclose(got["boxes"], expected[1], atol=1e-3)


def test_pipeline_counts_faults_and_the_other_streams_go_on(openvino_engine):
    engine, artifact, size = openvino_engine
    clips = [synthetic_clip(seed, frames=6, size=size[0]) for seed in range(3)]
    streams = [StreamSpec(clips[0], 12, fps=60), StreamSpec(clips[1], 12, fps=60),
               StreamSpec(clips[2], 12, fps=60, faults=Faults(end_after=8, stall_at=3, stall_seconds=0.3,
                                                              corrupt_every=5))]
    runner = create_runner(engine, artifact, size, ParallelSettings(threads=2, streams=1, batch=2, inflight=2))
    run = Pipeline(streams, runner, size, batch_timeout_ms=3).run()
    runner.close()
    # A busy machine can also starve a healthy decoder past the stall threshold: stalls are at least the one injected.
    assert run.faults["corrupt"] == 1 and run.faults["ended"] == 1 and run.faults["stalled"] >= 1
    per_stream = [sum(1 for f in run.frames if f.stream == s) for s in range(3)]
    assert per_stream == [12, 12, 7]  # 8 sent before the end, one of them corrupt
    assert all(set(f.times) == set(STAGES) for f in run.frames)
    for frame in run.frames:  # the stages follow each other
        ends = [frame.times[stage][1] for stage in STAGES]
        assert ends == sorted(ends)
    assert any(len({f.stream for f in run.frames if f.batch_id == b}) > 1 for b in {f.batch_id for f in run.frames})


def test_every_scenario_on_the_shipped_model(openvino_engine):
    engine, artifact, size = openvino_engine
    results = Measurement(engine, artifact, size, QUICK).run()
    curve = results["tuning"]["curve"]
    assert len(curve) == 4 and results["tuning"]["best"] == max(curve, key=lambda p: p["throughput_fps"])["settings"]
    offline = results["offline"]
    assert offline["samples"] > 0 and offline["speedup"] == pytest.approx(offline["throughput_sps"]
                                                                          / offline["sequential_fps"])
    single = results["singlestream"]
    assert single["settings"]["batch"] == 1 and 0 < single["p50_ms"] <= single["p99_ms"]
    multi = results["multistream"]
    passed = [t["streams"] for t in multi["trials"] if t["on_time"] >= 0.99]
    assert multi["streams_sustained"] == (max(passed) if passed else 0)
    assert multi["frames_done"] == multi["frames_sent"]  # no fault injected in the throughput run
    counted = multi["faults"]["counted"]
    assert counted["corrupt"] == 1 and counted["ended"] == 1 and counted["stalled"] >= 1
    assert multi["faults"]["healthy_streams_complete"]
    assert set(multi["cpu"]) == set(STAGES) and multi["cpu"]["inference"] > 0
    assert {e["cat"] for e in multi["trace"]["traceEvents"] if e["ph"] == "X"} == set(STAGES)
    server = results["server"]
    meeting = [t["target_rate"] for t in server["trials"] if t["p99_ms"] < server["bound_ms"]]
    assert server["highest_rate"] == (max(meeting) if meeting else 0.0)


def test_command_writes_results_and_trace(tmp_path, capsys):
    assert main(["--engine", "openvino", "--scenario", "singlestream", "--seconds", "0.3", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "parallel-openvino.json").read_text())
    assert "singlestream" in results and "multistream" not in results
    assert "singlestream: p50" in capsys.readouterr().out

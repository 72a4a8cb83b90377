"""Measure one built engine in MLPerf's scenarios: the figures of the targets and what the report shows.

- offline: LoadGen Offline at the best tuned setting, beside the sequential batch-1 loop (engine.infer, one
  frame after another) timed in the same run: speed-up = offline throughput / loop throughput; and beside the
  tuning point with one batch-1 request at a time through the same runner (the stricter baseline).
- singlestream: LoadGen SingleStream (batch 1, one request): p50/p99 latency.
- multistream: the pipeline with N paced streams (decode, preprocess, batching, inference, postprocess) at
  `fps`; a stream is served when >= 99 % of its frames finish within the deadline (one frame interval unless
  given); the most streams served; the unpaced pipeline's throughput against inference alone (the same
  runner fed preprocessed batches); LoadGen's MultiStream (N frames a query) for its p99; faults; a trace.
- server: LoadGen Server at Poisson rates, bisected to the highest rate with p99 under the bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optim.parallel.loadgen_run import LoadGenRun, run_loadgen
from optim.parallel.pipeline import STAGES, Pipeline, PipelineRun, StreamSpec
from optim.parallel.rules import ON_TIME_SHARE, highest_rate, most_streams, on_time_share
from optim.parallel.runners import ParallelSettings, create_runner
from optim.parallel.sources import Faults, decode, file_frames, synthetic_clip
from optim.parallel.trace import chrome_trace
from optim.parallel.tune import tune

SERVER_LOWEST_RATE = 20.0  # Poisson arrivals per second where the Server search starts


@dataclass(frozen=True)
class ScenarioSettings:
    """What to run (see optim.spec.ScenariosSpec, which builds this)."""

    scenarios: tuple[str, ...] = ("singlestream", "multistream", "server", "offline")
    seconds: float = 2.0
    fps: float = 30.0
    deadline_ms: float | None = None  # default: one frame interval
    max_streams: int = 8
    server_bound_ms: float = 50.0
    server_max_rate: float = 800.0
    grid: dict = field(default_factory=lambda: {"threads": [2], "streams": [1, 2], "batch": [1, 4],
                                                 "inflight": [1, 2, 4]})
    faults: bool = True  # one extra stream with a corrupt frame, a stall and an early end, in the pipeline run


class Measurement:
    """A built engine + input size + a few preprocessed frames, measured scenario by scenario."""

    def __init__(self, engine, artifact, input_size: tuple[int, int], settings: ScenarioSettings,
                 videos: list[Path] | None = None):
        """Streams play `videos` (cycled over the streams), else the synthetic generator's clips."""
        from optim.data.transforms import preprocess_image

        self.engine, self.artifact, self.input_size, self.settings = engine, artifact, input_size, settings
        count = settings.max_streams + 1
        if videos:
            files = [file_frames(path) for path in videos]
            self.clips = [files[i % len(files)] for i in range(count)]
        else:
            self.clips = [synthetic_clip(seed, frames=16, size=input_size[0]) for seed in range(count)]
        self.samples = np.stack([preprocess_image(decode(data), input_size).numpy()
                                 for clip in self.clips[:4] for data in clip])

    def runner(self, settings: ParallelSettings):
        return create_runner(self.engine, self.artifact, self.input_size, settings)

    def sequential_loop(self, seconds: float) -> float:
        """Frames per second of engine.infer called on one frame after another (after one untimed call, which
        may compile the batch-1 shape)."""
        self.engine.infer(self.samples[:1])
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or count < 5:
            self.engine.infer(self.samples[count % len(self.samples)][None])
            count += 1
        return count / (time.perf_counter() - start)

    def inference_alone(self, settings: ParallelSettings, seconds: float) -> float:
        """Frames per second of the runner fed preprocessed batches as fast as it takes them."""
        runner = self.runner(settings)
        try:
            batches = [self.samples[i:i + settings.batch] for i in range(0, len(self.samples) - settings.batch + 1,
                                                                           settings.batch)]
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                runner.submit(batches[count % len(batches)], lambda *_: None)
                count += 1
            runner.wait()
            return count * settings.batch / (time.perf_counter() - start)
        finally:
            runner.close()

    def pipeline(self, settings: ParallelSettings, streams: int, fps: float | None, faults: bool = False) -> PipelineRun:
        frames = max(8, int(self.settings.seconds * (fps or 60)))
        specs = [StreamSpec(self.clips[i], frames, fps) for i in range(streams)]
        if faults:
            specs.append(StreamSpec(self.clips[streams % len(self.clips)], frames, fps,
                                    Faults(end_after=frames // 2, stall_at=frames // 4, stall_seconds=0.5,
                                           corrupt_every=max(frames // 3, 2))))
        runner = self.runner(settings)
        try:
            runner.submit(self.samples[:settings.batch], lambda *_: None)  # warm-up, before any frame is due
            runner.wait()
            return Pipeline(specs, runner, self.input_size).run()
        finally:
            runner.close()

    def stream_shares(self, run: PipelineRun, deadline_s: float, frames_per_stream: dict[int, int]) -> dict[int, float]:
        shares = {}
        for stream, sent in frames_per_stream.items():
            mine = [f for f in run.frames if f.stream == stream]
            shares[stream] = on_time_share([f.due for f in mine], [f.done for f in mine], deadline_s, sent)
        return shares

    def multistream(self, settings: ParallelSettings) -> dict:
        fps = self.settings.fps
        deadline = (self.settings.deadline_ms or 1000 / fps) / 1000
        runs: dict[int, dict] = {}

        def served(streams: int) -> bool:
            run = self.pipeline(settings, streams, fps)
            sent = max(8, int(self.settings.seconds * fps))
            shares = self.stream_shares(run, deadline, {i: sent for i in range(streams)})
            runs[streams] = {"streams": streams, "on_time": min(shares.values()),
                             "p99_ms": float(np.percentile(run.latencies_ms(), 99)) if run.frames else None}
            return all(share >= ON_TIME_SHARE for share in shares.values())

        sustained = most_streams(served, self.settings.max_streams)
        unpaced = self.pipeline(settings, self.settings.max_streams, None)
        faulty = self.pipeline(settings, 2, fps, faults=True) if self.settings.faults else None
        alone = self.inference_alone(settings, self.settings.seconds)
        loadgen = run_loadgen(self.runner(settings), self.samples,
                              LoadGenRun("multistream", self.settings.seconds, streams=max(sustained, 1),
                                         latency_bound_ms=deadline * 1000))
        return {"fps": fps, "deadline_ms": deadline * 1000, "streams_sustained": sustained,
                "trials": list(runs.values()), "pipeline_fps": unpaced.throughput_fps(), "inference_alone_fps": alone,
                "pipeline_vs_inference": unpaced.throughput_fps() / alone if alone else None,
                "faults": _fault_check(faulty), "frames_done": len(unpaced.frames), "frames_sent": unpaced.sent,
                "cpu": cpu_shares(unpaced), "trace": chrome_trace(unpaced, frames_per_stream=4),
                "loadgen": _strip(loadgen), "settings": settings.as_dict()}

    def server(self, settings: ParallelSettings) -> dict:
        bound = self.settings.server_bound_ms
        runs: dict[float, dict] = {}

        def meets(rate: float) -> bool:
            result = run_loadgen(self.runner(settings), self.samples,
                                 LoadGenRun("server", self.settings.seconds, server_rate=rate, latency_bound_ms=bound))
            runs[rate] = _strip(result)
            return result["p99_ms"] < bound

        low = min(SERVER_LOWEST_RATE, self.settings.server_max_rate)
        best = highest_rate(meets, low, self.settings.server_max_rate, steps=5)
        return {"bound_ms": bound, "highest_rate": best, "trials": [runs[r] for r in sorted(runs)],
                "settings": settings.as_dict()}

    def offline(self, settings: ParallelSettings, expected_qps: float, loop: float, single: dict | None) -> dict:
        """LoadGen Offline at `settings`, against the sequential loop (`loop` frames/s) and against `single`, the
        tuning point with one batch-1 request at a time through the same runner (the stricter baseline: it has the
        runner's engine configuration and calling thread, without any parallelism)."""
        result = run_loadgen(self.runner(settings), self.samples,
                             LoadGenRun("offline", self.settings.seconds, expected_qps=expected_qps))
        single_fps = single["throughput_fps"] if single else None
        return {**_strip(result), "sequential_fps": loop, "speedup": result["throughput_sps"] / loop,
                "single_request_fps": single_fps,
                "speedup_vs_single_request": result["throughput_sps"] / single_fps if single_fps else None,
                "settings": settings.as_dict()}

    def singlestream(self) -> dict:
        threads = max(self.settings.grid["threads"])
        return _strip(run_loadgen(self.runner(ParallelSettings(threads, 1, 1, 1)), self.samples,
                                  LoadGenRun("singlestream", self.settings.seconds)))

    def run(self) -> dict:
        """Every scenario named, after tuning (the best throughput setting for offline, the best setting whose
        request p99 fits the deadline for multistream and server)."""
        # The baseline loop runs first, before any parallel runner has started threads of its own.
        sequential = self.sequential_loop(self.settings.seconds) if "offline" in self.settings.scenarios else None
        curve = tune(self.runner, self.samples, self.settings.grid, self.settings.seconds / 2)
        best = max(curve, key=lambda point: point["throughput_fps"])
        results: dict = {"tuning": {"curve": curve, "best": best["settings"]}}
        fastest = ParallelSettings(**best["settings"])
        deadline = self.settings.deadline_ms or 1000 / self.settings.fps
        fitting = [p for p in curve if p["p99_ms"] <= deadline / 2] or [min(curve, key=lambda p: p["p99_ms"])]
        responsive = ParallelSettings(**max(fitting, key=lambda p: p["throughput_fps"])["settings"])
        for scenario in self.settings.scenarios:
            if scenario == "offline":
                results["offline"] = self.offline(fastest, best["throughput_fps"], sequential, _single_request(curve))
            elif scenario == "singlestream":
                results["singlestream"] = self.singlestream()
            elif scenario == "multistream":
                results["multistream"] = self.multistream(responsive)
            elif scenario == "server":
                results["server"] = self.server(responsive)
        return results


def _single_request(curve: list[dict]) -> dict | None:
    """The tuning point without parallelism (1 stream, batch 1, 1 request), with the most threads."""
    single = [p for p in curve if (p["settings"]["streams"], p["settings"]["batch"], p["settings"]["inflight"]) == (1, 1, 1)]
    return max(single, key=lambda p: p["settings"]["threads"]) if single else None


def _fault_check(run: PipelineRun | None) -> dict | None:
    """Two healthy streams beside one that sends a corrupt frame, stalls and ends early: the faults counted,
    and whether the healthy streams delivered every frame."""
    if run is None:
        return None
    sent = run.sent // run.streams  # every stream was given the same number of frames
    healthy = [sum(1 for f in run.frames if f.stream == s) for s in range(run.streams - 1)]
    return {"counted": dict(run.faults), "healthy_streams_complete": all(n == sent for n in healthy)}


def cpu_shares(run: PipelineRun) -> dict[str, float]:
    """CPU utilisation per stage: CPU seconds / (wall seconds x cores)."""
    import os

    cores = os.cpu_count() or 1
    return {stage: round(run.cpu_seconds.get(stage, 0.0) / (run.wall_seconds * cores), 4) for stage in STAGES}


def _strip(result: dict) -> dict:
    """A LoadGen result without the per-sample issue times (kept only by tests of the arrival process)."""
    return {k: v for k, v in result.items() if k != "issue_times"}


def measure_scenarios(engine, artifact, input_size: tuple[int, int], spec) -> dict:
    """Every scenario of `spec` (an optim.spec.ScenariosSpec) on a built engine."""
    grid = {key: list(getattr(spec, key)) for key in ("threads", "streams", "batch", "inflight")}
    settings = ScenarioSettings(scenarios=tuple(spec.run), seconds=spec.seconds, fps=spec.fps,
                                deadline_ms=spec.deadline_ms, max_streams=spec.max_streams,
                                server_bound_ms=spec.server_bound_ms, server_max_rate=spec.server_max_rate,
                                grid=grid, faults=spec.faults)
    return Measurement(engine, artifact, input_size, settings).run()

"""MLPerf scenarios driven by MLCommons LoadGen (the reference load generator): LoadGen issues queries
(one frame at a time, a MultiStream query of N frames, Poisson arrivals, or everything at once), our SUT
batches them across queries and runs them on an `AsyncRunner`, and LoadGen's own log gives the result and
its VALID flag. MLPerf's rules want 600 s runs (and enough queries for early stopping); the lab's runs last
seconds, so VALID is reported as advisory, next to the latencies we time ourselves from issue to completion."""

from __future__ import annotations

import json
import queue
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optim.errors import MissingExtraError
from optim.parallel.runners import AsyncRunner

SCENARIOS = ("singlestream", "multistream", "server", "offline")
_END = object()


def loadgen():
    """The mlperf_loadgen module, or MissingExtraError naming the extra."""
    try:
        import mlperf_loadgen
    except ImportError as error:
        raise MissingExtraError("mlcommons-loadgen", "parallel", "MLPerf scenarios (LoadGen)") from error
    return mlperf_loadgen


@dataclass(frozen=True)
class LoadGenRun:
    """One LoadGen test's settings; seconds bounds its duration (LoadGen's min_duration)."""

    scenario: str
    seconds: float = 2.0
    server_rate: float = 20.0  # Server: Poisson arrivals per second
    latency_bound_ms: float = 50.0  # Server: the p99 target; MultiStream: LoadGen's expected query latency
    streams: int = 4  # MultiStream: frames per query (one per camera)
    expected_qps: float = 50.0  # Offline: how many samples LoadGen issues (expected_qps x seconds)
    batch_timeout_ms: float = 5.0


class LoadGenSut:
    """System under test: queries -> cross-query batches (up to the runner's batch size, or batch_timeout)
    -> runner; completions reported to LoadGen. Issue and completion times are kept per sample."""

    def __init__(self, runner: AsyncRunner, samples: np.ndarray, batch_timeout_ms: float):
        self.lg = loadgen()
        self.runner, self.samples = runner, samples
        self.timeout = batch_timeout_ms / 1000
        self.pending: queue.Queue = queue.Queue()
        self.issued: dict[int, float] = {}
        self.completed: dict[int, float] = {}
        self._lock = threading.Lock()
        self._batcher = threading.Thread(target=self._batch, name="loadgen-batcher")
        self._batcher.start()

    def issue_queries(self, query_samples) -> None:
        now = time.perf_counter()
        for sample in query_samples:
            self.issued[sample.id] = now
            self.pending.put((sample.id, sample.index))

    def flush_queries(self) -> None:
        pass

    def _batch(self) -> None:
        size = self.runner.settings.batch
        while (first := self.pending.get()) is not _END:
            batch, opened = [first], time.perf_counter()
            while len(batch) < size:
                remaining = self.timeout - (time.perf_counter() - opened)
                try:
                    item = self.pending.get(timeout=remaining) if remaining > 0 else self.pending.get_nowait()
                except queue.Empty:
                    break
                if item is _END:
                    self.pending.put(_END)
                    break
                batch.append(item)
            pixels = self.samples[[index for _, index in batch]]
            self.runner.submit(pixels, self._on_done([sample_id for sample_id, _ in batch]))

    def _on_done(self, ids: list[int]):
        def done(logits, boxes) -> None:
            now = time.perf_counter()
            with self._lock:
                for sample_id in ids:
                    self.completed[sample_id] = now
            self.lg.QuerySamplesComplete([self.lg.QuerySampleResponse(i, 0, 0) for i in ids])
        return done

    def stop(self) -> None:
        self.pending.put(_END)
        self._batcher.join()
        self.runner.wait()

    def latencies_ms(self) -> np.ndarray:
        return np.array([(self.completed[i] - self.issued[i]) * 1000 for i in self.completed if i in self.issued])


def _settings(lg, run: LoadGenRun):
    settings = lg.TestSettings()
    settings.scenario = {"singlestream": lg.TestScenario.SingleStream, "multistream": lg.TestScenario.MultiStream,
                         "server": lg.TestScenario.Server, "offline": lg.TestScenario.Offline}[run.scenario]
    settings.mode = lg.TestMode.PerformanceOnly
    settings.min_duration_ms = int(run.seconds * 1000)
    settings.max_duration_ms = int(run.seconds * 1000 * 3)
    settings.min_query_count = 1
    if run.scenario == "server":
        settings.server_target_qps = run.server_rate
        settings.server_target_latency_ns = int(run.latency_bound_ms * 1e6)
    elif run.scenario == "multistream":
        settings.multi_stream_samples_per_query = run.streams
        settings.multi_stream_expected_latency_ns = int(run.latency_bound_ms * 1e6)
    elif run.scenario == "offline":
        settings.offline_expected_qps = run.expected_qps
    return settings


def read_detail(path: Path) -> dict:
    """The result_* entries of LoadGen's mlperf_log_detail.txt as {key: value}."""
    results = {}
    for line in path.read_text().splitlines():
        if line.startswith(":::MLLOG"):
            entry = json.loads(line[len(":::MLLOG"):])
            if entry["key"].startswith("result_"):
                results[entry["key"]] = entry["value"]
    return results


def run_loadgen(runner: AsyncRunner, samples: np.ndarray, run: LoadGenRun, log_dir: Path | None = None) -> dict:
    """Run one LoadGen scenario on `runner` (closed afterwards) over preprocessed `samples` (N, 3, H, W);
    returns the figures."""
    lg = loadgen()
    sut = LoadGenSut(runner, samples, run.batch_timeout_ms)
    sut_handle = lg.ConstructSUT(sut.issue_queries, sut.flush_queries)
    qsl = lg.ConstructQSL(len(samples), len(samples), lambda _: None, lambda _: None)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(log_dir or scratch)
        out.mkdir(parents=True, exist_ok=True)
        log = lg.LogSettings()
        log.log_output.outdir = str(out)
        log.log_output.copy_summary_to_stdout = False
        start = time.perf_counter()
        try:
            lg.StartTestWithLogSettings(sut_handle, qsl, _settings(lg, run), log)
        finally:
            sut.stop()
            runner.close()
            lg.DestroyQSL(qsl)
            lg.DestroySUT(sut_handle)
        wall = time.perf_counter() - start
        detail = read_detail(out / "mlperf_log_detail.txt")
    latencies = sut.latencies_ms()
    return {
        "scenario": run.scenario, "settings": runner.settings.as_dict(), "samples": len(latencies),
        "seconds": round(wall, 3),
        "throughput_sps": float(detail.get("result_completed_samples_per_sec")
                                or detail.get("result_samples_per_second") or len(latencies) / wall),
        "p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99)),
        "loadgen_valid": detail.get("result_validity") == "VALID",
        "loadgen_p99_ms": (detail.get("result_99.00_percentile_latency_ns") or 0) / 1e6,
        "issue_times": sorted(sut.issued.values()),
        **({"target_rate": run.server_rate} if run.scenario == "server" else {}),
        **({"streams": run.streams} if run.scenario == "multistream" else {}),
    }

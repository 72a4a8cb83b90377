"""Closed-loop (N clients, each sending its next request when the last one answered) and open-loop (Poisson
arrivals at a fixed rate, latency counted from the scheduled arrival, so a slow server cannot hide its
queue: no coordinated omission) load against one model, with the server's own queue/compute split."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from optim.serving.client import TritonClient
from optim.serving.metrics import scrape, server_split


@dataclass(frozen=True)
class Target:
    """What to load: server URL, protocol, model, one request's inputs and the outputs to fetch."""

    url: str
    protocol: str
    model: str
    inputs: dict[str, np.ndarray]
    outputs: list[str]
    metrics_url: str | None = None


@dataclass
class Samples:
    """Per-request latencies (s) and error messages, collected by several threads."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, latency: float | None, error: str | None = None) -> None:
        with self.lock:
            if error is None:
                self.latencies.append(latency)
            else:
                self.errors.append(error)


def _client_pool(target: Target):
    """A thread-local TritonClient getter (tritonclient's HTTP client must not be shared between threads)."""
    local = threading.local()
    clients: list[TritonClient] = []

    def get() -> TritonClient:
        if not hasattr(local, "client"):
            local.client = TritonClient(target.url, target.protocol)
            clients.append(local.client)
        return local.client

    return get, clients


def _send(get_client, target: Target, samples: Samples, start: float) -> None:
    try:
        get_client().infer(target.model, target.inputs, target.outputs)
        samples.add(time.perf_counter() - start)
    except Exception as error:  # noqa: BLE001 -- every failure is counted and reported, never fatal
        samples.add(None, f"{type(error).__name__}: {error}"[:300])


def closed_loop(target: Target, concurrency: int, duration_s: float, warmup_s: float = 1.0) -> dict:
    """`concurrency` workers back to back for `warmup_s` (not counted) then `duration_s`."""
    get_client, clients = _client_pool(target)
    samples, warm = Samples(), Samples()
    stop_warmup = time.perf_counter() + warmup_s
    window: dict = {}

    def worker() -> None:
        while time.perf_counter() < stop_warmup:
            _send(get_client, target, warm, time.perf_counter())
        while time.perf_counter() < window["end"]:
            _send(get_client, target, samples, time.perf_counter())

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    window["end"] = stop_warmup + duration_s
    for thread in threads:
        thread.start()
    time.sleep(max(stop_warmup - time.perf_counter(), 0))
    before = _scrape(target)
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    result = summarize(samples, elapsed, target, before)
    _close(clients)
    return {"mode": "closed", "concurrency": concurrency, **result}


def open_loop(target: Target, rate: float, duration_s: float, seed: int = 0, max_in_flight: int = 64) -> dict:
    """Poisson arrivals at `rate` requests/s for `duration_s`; each latency runs from the scheduled arrival."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, size=int(rate * duration_s * 1.5) + 10))
    arrivals = arrivals[arrivals < duration_s]
    get_client, clients = _client_pool(target)
    samples = Samples()
    before = _scrape(target)
    with ThreadPoolExecutor(max_workers=max_in_flight) as pool:
        origin = time.perf_counter()
        for offset in arrivals:
            delay = origin + offset - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(_send, get_client, target, samples, origin + offset)
    elapsed = time.perf_counter() - origin
    result = summarize(samples, elapsed, target, before)
    _close(clients)
    return {"mode": "open", "rate": rate, "offered": len(arrivals), **result}


def paired_overhead(target: Target, infer: Callable[[np.ndarray], object], duration_s: float, rounds: int = 10,
                    warmup: int = 10) -> dict:
    """The server's overhead at concurrency 1: `rounds` alternating slices of back-to-back `infer(inputs)` calls
    in this process (the same engine and input) and back-to-back requests to the server, `duration_s` in all;
    alternating cancels the drift of a shared machine's speed between the two."""
    client = TritonClient(target.url, target.protocol)
    pixels = next(iter(target.inputs.values()))
    local: list[float] = []
    served = Samples()
    try:
        for _ in range(warmup):
            infer(pixels)
            _send(lambda: client, target, Samples(), time.perf_counter())
        before = _scrape(target)
        slice_s = duration_s / (2 * rounds)
        for _ in range(rounds):
            end = time.perf_counter() + slice_s
            while time.perf_counter() < end:
                start = time.perf_counter()
                infer(pixels)
                local.append(time.perf_counter() - start)
            end = time.perf_counter() + slice_s
            while time.perf_counter() < end:
                _send(lambda: client, target, served, time.perf_counter())
        result = {"mode": "paired", "concurrency": 1, **summarize(served, duration_s / 2, target, before)}
    finally:
        client.close()
    ms = np.asarray(local) * 1000.0
    result["in_process"] = {f"p{q}_ms": round(float(np.percentile(ms, q)), 3) for q in (50, 90, 99)}
    result["in_process"]["iters"] = len(ms)
    if "p50_ms" in result:
        result["overhead_p50_ms"] = round(result["p50_ms"] - result["in_process"]["p50_ms"], 3)
    return result


def _scrape(target: Target) -> dict[str, float] | None:
    return scrape(target.metrics_url, target.model) if target.metrics_url else None


def _close(clients: list[TritonClient]) -> None:
    for client in clients:
        client.close()


def summarize(samples: Samples, elapsed_s: float, target: Target, before: dict | None) -> dict:
    """Latency percentiles (ms), throughput (successful requests and images per second), errors, server split."""
    ms = np.asarray(samples.latencies) * 1000.0
    batch = next(iter(target.inputs.values())).shape[0]
    stats = {"duration_s": round(elapsed_s, 3), "requests": len(ms), "errors": len(samples.errors),
             "error_examples": sorted(set(samples.errors))[:3],
             "throughput_rps": round(len(ms) / elapsed_s, 2), "throughput_ips": round(len(ms) * batch / elapsed_s, 2)}
    if len(ms):
        stats.update({f"p{q}_ms": round(float(np.percentile(ms, q)), 3) for q in (50, 90, 99)})
        stats["mean_ms"] = round(float(ms.mean()), 3)
    if before is not None:
        stats["server"] = server_split(before, _scrape(target))
    return stats

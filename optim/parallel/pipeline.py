"""The video-analytics pipeline: per stream a decoder thread (paced at the stream's frame rate, or as fast as
the queues allow) -> preprocess worker threads -> a batcher that collects frames from every stream up to the
batch size or a deadline -> the engine's asynchronous runner -> a postprocess thread. Every queue is bounded.

Faults are counted and skipped: a frame that fails to decode (corrupt), a stream that ends early, a stream
that stalls (a gap over STALL_FACTOR frame intervals, or over UNPACED_STALL_SECONDS when unpaced). The other streams go on.
Each frame's times at every stage are kept, for latency, deadline accounting and the trace."""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from optim.data.transforms import preprocess_image
from optim.evaluation.postprocess import postprocess
from optim.parallel.runners import AsyncRunner
from optim.parallel.sources import Faults, decode, stream_frames

STALL_FACTOR = 3.0
UNPACED_STALL_SECONDS = 0.25  # an unpaced stream that sends nothing for this long has stalled
QUEUE_DEPTH = 64  # frames waiting between two stages, at most
STAGES = ("decode", "preprocess", "batch", "inference", "postprocess")
_END = object()


@dataclass
class StreamSpec:
    """One stream: its encoded frames, how many to send, at what rate (None = as fast as possible), faults."""

    frames: list[bytes]
    count: int
    fps: float | None = None
    faults: Faults = field(default_factory=Faults)


@dataclass
class Frame:
    """One frame's passage: `times` maps stage -> (start, end) in perf_counter seconds; `due` is its
    scheduled arrival (the deadline counts from it)."""

    stream: int
    index: int
    due: float
    times: dict[str, tuple[float, float]] = field(default_factory=dict)
    pixels: np.ndarray | None = None
    size: tuple[int, int] = (0, 0)
    detections: int = 0
    batch_id: int = -1

    @property
    def done(self) -> float:
        return self.times["postprocess"][1]


@dataclass
class PipelineRun:
    """What one run produced: finished frames, faults by kind, CPU seconds by stage, wall time."""

    frames: list[Frame]
    faults: Counter
    cpu_seconds: dict[str, float]
    wall_seconds: float
    sent: int
    streams: int

    def latencies_ms(self) -> np.ndarray:
        return np.array([(f.done - f.due) * 1000 for f in self.frames])

    def throughput_fps(self) -> float:
        if not self.frames:
            return 0.0
        start = min(f.due for f in self.frames)
        return len(self.frames) / max(max(f.done for f in self.frames) - start, 1e-9)


class _CpuClock:
    """CPU seconds of the Python threads of each stage (time.thread_time), summed under a lock."""

    def __init__(self):
        self.seconds: Counter = Counter()
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] += seconds


class Pipeline:
    """Run `streams` through `runner` once: `Pipeline(...).run()` -> PipelineRun."""

    def __init__(self, streams: list[StreamSpec], runner: AsyncRunner, input_size: tuple[int, int],
                 batch_timeout_ms: float = 5.0, preprocess_workers: int = 2):
        self.streams, self.runner, self.input_size = streams, runner, input_size
        self.batch, self.batch_timeout = runner.settings.batch, batch_timeout_ms / 1000
        self.workers = preprocess_workers
        self.decoded: queue.Queue = queue.Queue(QUEUE_DEPTH)
        self.ready: queue.Queue = queue.Queue(QUEUE_DEPTH)
        self.finished: queue.Queue = queue.Queue()
        self.faults: Counter = Counter()
        self.cpu = _CpuClock()
        self._lock = threading.Lock()
        self._frames: list[Frame] = []

    def run(self) -> PipelineRun:
        start_cpu, start = time.process_time(), time.perf_counter()
        t0 = start + 0.05
        decoders = [threading.Thread(target=self._decode, args=(i, s, t0), name=f"decode-{i}")
                    for i, s in enumerate(self.streams)]
        workers = [threading.Thread(target=self._preprocess, name=f"preprocess-{i}") for i in range(self.workers)]
        batcher = threading.Thread(target=self._batch, name="batcher")
        post = threading.Thread(target=self._postprocess, name="postprocess")
        for thread in (*decoders, *workers, batcher, post):
            thread.start()
        for thread in decoders:
            thread.join()
        for _ in workers:
            self.decoded.put(_END)
        for thread in workers:
            thread.join()
        self.ready.put(_END)
        batcher.join()
        self.runner.wait()
        self.finished.put(_END)
        post.join()
        wall = time.perf_counter() - start
        frames = self._frames
        cpu = dict(self.cpu.seconds)
        # Inference runs in the engine's own threads: its CPU time is the process's minus the stages'.
        cpu["inference"] = max(0.0, time.process_time() - start_cpu - sum(cpu.values()))
        return PipelineRun(frames, self.faults, cpu, wall, sum(s.count for s in self.streams), len(self.streams))

    def _count(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def _decode(self, stream_id: int, stream: StreamSpec, t0: float) -> None:
        interval = 1.0 / stream.fps if stream.fps else None
        stall_gap = STALL_FACTOR * interval if interval else UNPACED_STALL_SECONDS
        last, seen = None, 0
        for index, data in stream_frames(stream.frames, stream.count, stream.faults):
            seen = index + 1
            if data is None:  # the source stops sending for a while
                time.sleep(stream.faults.stall_seconds)
                continue
            due = t0 + index * interval if interval else time.perf_counter()
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            now = time.perf_counter()
            if last is not None and now - last > stall_gap + (interval or 0):
                self._count("stalled")
            last = now
            cpu = time.thread_time()
            frame = Frame(stream_id, index, due if interval else now)
            try:
                image = decode(data)
            except OSError:
                self._count("corrupt")
                self.cpu.add("decode", time.thread_time() - cpu)
                continue
            frame.times["decode"] = (now, time.perf_counter())
            frame.size = (image.height, image.width)
            frame.pixels = image  # decoded image; preprocess turns it into the tensor
            self.cpu.add("decode", time.thread_time() - cpu)
            self.decoded.put(frame)
        if seen < stream.count:  # the source ended before the frames it was to send
            self._count("ended")

    def _preprocess(self) -> None:
        while (frame := self.decoded.get()) is not _END:
            cpu, start = time.thread_time(), time.perf_counter()
            frame.pixels = preprocess_image(frame.pixels, self.input_size).numpy()
            frame.times["preprocess"] = (start, time.perf_counter())
            self.cpu.add("preprocess", time.thread_time() - cpu)
            self.ready.put(frame)

    def _batch(self) -> None:
        """Collect frames (from any stream) until the batch is full or the oldest has waited batch_timeout."""
        batch_id, ending = 0, False
        while not ending:
            first = self.ready.get()
            if first is _END:
                break
            batch, opened = [first], time.perf_counter()
            while len(batch) < self.batch:
                remaining = self.batch_timeout - (time.perf_counter() - opened)
                try:
                    item = self.ready.get(timeout=max(remaining, 0)) if remaining > 0 else self.ready.get_nowait()
                except queue.Empty:
                    break
                if item is _END:
                    ending = True
                    break
                batch.append(item)
            cpu = time.thread_time()
            pixels = np.stack([f.pixels for f in batch])
            submitted = time.perf_counter()
            for frame in batch:
                frame.times["batch"] = (frame.times["preprocess"][1], submitted)
                frame.batch_id = batch_id
                frame.pixels = None
            self.cpu.add("batch", time.thread_time() - cpu)
            self.runner.submit(pixels, self._on_done(batch, time.perf_counter()))
            batch_id += 1

    def _on_done(self, batch: list[Frame], started: float):
        def done(logits: np.ndarray, boxes: np.ndarray) -> None:
            self.finished.put((batch, started, time.perf_counter(), logits, boxes))
        return done

    def _postprocess(self) -> None:
        while (item := self.finished.get()) is not _END:
            batch, started, ended, logits, boxes = item
            cpu, start = time.thread_time(), time.perf_counter()
            detections = postprocess(logits, boxes, np.array([f.size for f in batch]), score_threshold=0.5)
            end = time.perf_counter()
            for frame, found in zip(batch, detections):
                frame.times["inference"] = (started, ended)
                frame.times["postprocess"] = (start, end)
                frame.detections = len(found.scores)
                self._frames.append(frame)
            self.cpu.add("postprocess", time.thread_time() - cpu)

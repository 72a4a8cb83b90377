"""Asynchronous inference on each engine's own parallel API, behind one small interface:
`submit(batch, done)` starts a batch and returns when a slot is free; `done(logits, pred_boxes)` is called
from the engine's thread when it finishes; `wait()` blocks until every submitted batch is done.

- OpenVINO: the model compiled with the THROUGHPUT hint and `streams` CPU streams (each stream a group of
  cores running its own requests), driven by an `AsyncInferQueue` of `inflight` requests.
- ONNX Runtime: `streams` InferenceSessions (each with threads/streams intra-op threads), shared round-robin
  by `inflight` worker threads (`InferenceSession.run` releases the GIL and is thread-safe).
- PyTorch: `threads` intra-op threads (torch.set_num_threads, process-wide, restored by close) and `inflight` worker threads calling the
  module concurrently (ATen releases the GIL); `streams` is not used (PyTorch has no stream notion on CPU).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from optim.engines.onnx_export import OUTPUT_NAMES

Done = Callable[[np.ndarray, np.ndarray], None]


@dataclass(frozen=True)
class ParallelSettings:
    """threads: inference threads in all; streams: engine streams (OpenVINO) or sessions (ONNX Runtime);
    batch: frames per inference (cross-stream batching); inflight: inference requests running at once."""

    threads: int = 2
    streams: int = 1
    batch: int = 1
    inflight: int = 1

    def as_dict(self) -> dict:
        return asdict(self)

    def label(self) -> str:
        return f"t{self.threads} s{self.streams} b{self.batch} r{self.inflight}"


class AsyncRunner:
    """A bounded pool of in-flight batches; subclasses say how one batch runs."""

    def __init__(self, settings: ParallelSettings):
        self.settings = settings
        self._slots = threading.BoundedSemaphore(settings.inflight)
        self._pool = ThreadPoolExecutor(settings.inflight, thread_name_prefix="infer")
        self._errors: list[BaseException] = []
        self.request_ms: list[float] = []  # submit-to-done time of every request

    def run(self, batch: np.ndarray, slot: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def submit(self, batch: np.ndarray, done: Done) -> None:
        self._slots.acquire()
        self._pool.submit(self._job, np.ascontiguousarray(batch, dtype=np.float32), done, time.perf_counter())

    def _job(self, batch: np.ndarray, done: Done, submitted: float) -> None:
        slot = int(threading.current_thread().name.rsplit("_", 1)[-1])
        try:
            outputs = self.run(batch, slot)
            self.request_ms.append((time.perf_counter() - submitted) * 1000)
            done(*outputs)
        except BaseException as error:  # noqa: BLE001 -- surfaced by wait(), never lost in a worker thread
            self._errors.append(error)
        finally:
            self._slots.release()

    def wait(self) -> None:
        for _ in range(self.settings.inflight):
            self._slots.acquire()
        for _ in range(self.settings.inflight):
            self._slots.release()
        if self._errors:
            raise self._errors[0]

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class OnnxRuntimeRunner(AsyncRunner):
    def __init__(self, artifact: Path, settings: ParallelSettings):
        super().__init__(settings)
        from optim.engines.onnxruntime_engine import create_session

        per_session = max(1, settings.threads // settings.streams)
        self._sessions = [create_session(Path(artifact), ["CPUExecutionProvider"], per_session)
                          for _ in range(settings.streams)]

    def close(self) -> None:
        super().close()
        self._sessions = []

    def run(self, batch, slot):
        logits, boxes = self._sessions[slot % len(self._sessions)].run(OUTPUT_NAMES, {"pixel_values": batch})
        return logits, boxes


class PyTorchRunner(AsyncRunner):
    def __init__(self, engine, settings: ParallelSettings):
        super().__init__(settings)
        import torch

        self._threads_before = torch.get_num_threads()
        torch.set_num_threads(settings.threads)
        self._engine = engine

    def run(self, batch, slot):
        return self._engine.infer(batch)

    def close(self) -> None:
        """Wait for the workers, then give the process back its intra-op thread count."""
        import torch

        super().close()
        torch.set_num_threads(self._threads_before)


class OpenVinoRunner(AsyncRunner):
    """OpenVINO's AsyncInferQueue; its requests run in OpenVINO's threads, so no Python pool is used."""

    def __init__(self, ov_model, precision: str, input_size: tuple[int, int], settings: ParallelSettings):
        self.settings = settings
        self._errors = []
        self.request_ms = []
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        model = ov_model.clone()
        model.reshape({"pixel_values": [settings.batch, 3, *input_size]})  # static shape: fastest on CPU
        config = {hints.performance_mode: hints.PerformanceMode.THROUGHPUT, props.num_streams: settings.streams,
                  props.inference_num_threads: settings.threads, hints.inference_precision: getattr(ov.Type, precision)}
        self.compiled = ov.Core().compile_model(model, "CPU", config)
        self._queue = ov.AsyncInferQueue(self.compiled, settings.inflight)
        self._queue.set_callback(self._finished)

    def _finished(self, request, userdata) -> None:
        done, submitted = userdata
        self.request_ms.append((time.perf_counter() - submitted) * 1000)
        try:
            done(*(np.array(request.get_tensor(name).data, dtype=np.float32) for name in OUTPUT_NAMES))
        except BaseException as error:  # noqa: BLE001 -- surfaced by wait()
            self._errors.append(error)

    def submit(self, batch: np.ndarray, done: Done) -> None:
        padded = pad_batch(batch, self.settings.batch)
        rows = len(batch)
        self._queue.start_async({"pixel_values": padded},
                                userdata=(lambda logits, boxes: done(logits[:rows], boxes[:rows]), time.perf_counter()))

    def wait(self) -> None:
        self._queue.wait_all()
        if self._errors:
            raise self._errors[0]

    def close(self) -> None:
        # Only wait: dropping the AsyncInferQueue here, while this thread holds the GIL, can deadlock with a
        # callback thread of its own; it goes with the runner.
        self._queue.wait_all()


def pad_batch(batch: np.ndarray, size: int) -> np.ndarray:
    """`batch` with zero images appended up to `size` rows (a static-shape model needs full batches)."""
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    if len(batch) >= size:
        return batch
    return np.concatenate([batch, np.zeros((size - len(batch), *batch.shape[1:]), np.float32)])


def create_runner(engine, artifact: Path | None, input_size: tuple[int, int], settings: ParallelSettings) -> AsyncRunner:
    """The runner of `engine` (built) with `settings`."""
    if engine.kind == "openvino":
        precision = engine.precision or "f32"
        return OpenVinoRunner(engine.ov_model, precision, input_size, settings)
    if engine.kind == "onnxruntime":
        return OnnxRuntimeRunner(artifact, settings)
    if engine.kind in ("pytorch", "torch_compile"):
        return PyTorchRunner(engine, settings)
    from optim.errors import OptimError

    raise OptimError(f"engine '{engine.kind}' has no parallel runner", field="engine.kind",
                     fix="use openvino, onnxruntime, pytorch or torch_compile for scenarios")

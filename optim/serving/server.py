"""The PyTriton server behind `python -m optim.serve` (runs in the serving environment, numpy < 2).

PyTriton runs the bundled `tritonserver` with its Python backend; each model instance's inference callable
runs one of the lab's engines (`optim.engines`) on the repository's artifact, loaded with `Engine.load`
(the bytes the runner measured). Two models per variant:
  <variant>         pixel_values (B, 3, H, W) float32 -> logits, pred_boxes (DETR's raw outputs)
  <variant>_detect  image (B, 1) encoded bytes -> boxes (B, Q, 4), scores (B, Q), labels (B, Q)
PyTriton has no ensembles, so `_detect` runs the repository's pre- and post-processing code in one callable.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optim.errors import MissingExtraError
from optim.monitor.pipeline import BadInput, MonitoredPipeline
from optim.serving.engine import load_engine
from optim.serving.options import ServingOptions

MONITOR_REFERENCE = "monitor_reference.json"  # the drift reference (python -m optim.monitor reference)


@dataclass(frozen=True)
class Endpoints:
    """Where the server listens (loopback unless told otherwise)."""

    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    monitor_port: int = 8003  # the lab's own metrics (optim.monitor), beside Triton's


def raw_callable(engine):
    """pixel_values -> DETR's raw outputs, for one model instance."""
    from pytriton.decorators import batch

    @batch
    def infer(pixel_values: np.ndarray) -> dict[str, np.ndarray]:
        logits, boxes = engine.infer(pixel_values)
        return {"logits": logits, "pred_boxes": boxes}

    return infer


def detect_callable(engine, input_size: tuple[int, int], metrics=None, drift=None):
    """Encoded images -> detections: the lab's pre-processing, the engine, the lab's post-processing, monitored
    (optim.monitor.pipeline) when `metrics` / `drift` are given."""
    from pytriton.decorators import batch
    from pytriton.exceptions import PyTritonBadParameterError

    pipeline = MonitoredPipeline(engine, input_size, metrics, drift)

    @batch
    def detect(image: np.ndarray) -> dict[str, np.ndarray]:
        try:
            detections = pipeline.run(list(image.reshape(-1))).detections
        except BadInput as error:
            raise PyTritonBadParameterError(f"input 'image': {error}") from error
        return {"boxes": np.stack([d.boxes for d in detections]).astype(np.float32),
                "scores": np.stack([d.scores for d in detections]).astype(np.float32),
                "labels": np.stack([d.labels for d in detections]).astype(np.int64)}

    return detect


def _model_config(options: ServingOptions):
    from pytriton.model_config import DynamicBatcher, ModelConfig

    batcher = DynamicBatcher(max_queue_delay_microseconds=options.max_queue_delay_us,
                             preferred_batch_size=list(options.preferred_batch_sizes)) \
        if options.dynamic_batching else None
    return ModelConfig(batching=True, max_batch_size=options.max_batch_size, batcher=batcher)


def serve(repository: Path, manifest: dict, options: ServingOptions, endpoints: Endpoints) -> None:
    """Bind both models and serve until SIGINT or SIGTERM; then stop Triton cleanly."""
    try:
        from pytriton.model_config import Tensor
        from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonSecurityConfig
    except ImportError as error:
        raise MissingExtraError("nvidia-pytriton", "serve", "python -m optim.serve") from error
    shapes = {name: tuple(dims) for name, dims in manifest["tensors"].items()}
    queries = shapes["pred_boxes"][0]
    input_size = tuple(manifest["input_size"])
    names = manifest["models"]
    raw = [load_engine(repository, manifest, options.threads) for _ in range(options.instances)]
    detect = [load_engine(repository, manifest, options.threads) for _ in range(options.instances)]
    config = TritonConfig(http_address=endpoints.host, http_port=endpoints.http_port, grpc_address=endpoints.host,
                          grpc_port=endpoints.grpc_port, metrics_address=endpoints.host,
                          metrics_port=endpoints.metrics_port, allow_metrics=True, allow_cpu_metrics=True,
                          metrics_config=["summary_latencies=true"], exit_on_error=True, strict_readiness=True)
    signal.signal(signal.SIGTERM, _interrupt)
    # Per-model statistics stay readable without PyTriton's token (perf_analyzer reads them; /metrics has the same
    # figures); shared memory, repository control, tracing and logging stay token-protected.
    security = TritonSecurityConfig(restricted_endpoints=[e for e in DEFAULT_PROTECTED_ENDPOINTS if e != "statistics"])
    metrics, drift, monitor = _monitoring(repository, manifest, endpoints)
    with Triton(config=config, security_config=security) as triton:
        triton.bind(model_name=names["core"], infer_func=[raw_callable(e) for e in raw],
                    inputs=[Tensor(name="pixel_values", dtype=np.float32, shape=shapes["pixel_values"])],
                    outputs=[Tensor(name="logits", dtype=np.float32, shape=shapes["logits"]),
                             Tensor(name="pred_boxes", dtype=np.float32, shape=shapes["pred_boxes"])],
                    config=_model_config(options), strict=True)
        triton.bind(model_name=names["detect"],
                    infer_func=[detect_callable(e, input_size, metrics, drift) for e in detect],
                    inputs=[Tensor(name="image", dtype=np.bytes_, shape=(1,))],
                    outputs=[Tensor(name="boxes", dtype=np.float32, shape=(queries, 4)),
                             Tensor(name="scores", dtype=np.float32, shape=(queries,)),
                             Tensor(name="labels", dtype=np.int64, shape=(queries,))],
                    config=_model_config(options), strict=True)
        print(f"serving '{names['core']}' and '{names['detect']}': HTTP {endpoints.host}:{endpoints.http_port}, "
              f"gRPC {endpoints.host}:{endpoints.grpc_port}, metrics "
              f"http://{endpoints.host}:{endpoints.metrics_port}/metrics, monitoring "
              f"http://{endpoints.host}:{endpoints.monitor_port}/metrics", flush=True)
        try:
            triton.serve()
        finally:
            monitor.shutdown()


def _monitoring(repository: Path, manifest: dict, endpoints: Endpoints):
    """The detector's metrics, served on endpoints.monitor_port, and the drift monitor when the repository has
    a drift reference."""
    from optim.monitor.drift import DriftMonitor, Reference
    from optim.monitor.metrics import DetectorMetrics, Identity, start_metrics_server

    metrics = DetectorMetrics(Identity.of_repository(repository), {int(k): v for k, v in manifest["id2label"].items()})
    reference = Path(repository) / MONITOR_REFERENCE
    drift = DriftMonitor(Reference.load(reference), metrics=metrics) if reference.is_file() else None
    return metrics, drift, start_metrics_server(metrics, endpoints.monitor_port, endpoints.host)


def _interrupt(signum, frame) -> None:
    """SIGTERM -> the same clean stop as Ctrl-C (PyTriton's serve loop stops Triton on KeyboardInterrupt)."""
    raise KeyboardInterrupt

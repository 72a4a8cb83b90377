"""The detector's Prometheus metrics (prometheus_client), named by Prometheus conventions: seconds, `_total`
counters, unitless ratios. Every series carries the deployed variant's name and its manifest hash.

Exposed by a prometheus_client HTTP server on 127.0.0.1 beside the server (Triton's own /metrics is a
separate endpoint; Prometheus scrapes both, see monitoring/prometheus.yml)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from optim.errors import OptimError
from optim.monitor.extras import prometheus_client

BASE_LABELS = ("variant", "manifest_hash")
# Millisecond detectors: 0.5 ms to 2.5 s, dense between 1 and 100 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15,
                   0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
COUNT_BUCKETS = (0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 50)
CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0)
SIZE_BUCKETS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0)
STAGES = ("decode", "preprocess", "inference", "postprocess")
DETECTION_THRESHOLD = 0.5  # a query scoring above this counts as a detection in the output metrics


def manifest_hash(repository: Path) -> str:
    """First 12 hex digits of manifest.json's sha256: names the exact deployed files (the manifest lists theirs)."""
    return hashlib.sha256((Path(repository) / "manifest.json").read_bytes()).hexdigest()[:12]


@dataclass(frozen=True)
class Identity:
    """What every series is labelled with."""

    variant: str
    manifest_hash: str

    @classmethod
    def of_repository(cls, repository: Path) -> Identity:
        manifest = json.loads((Path(repository) / "manifest.json").read_text())
        return cls(manifest["variant"], manifest_hash(repository))


class DetectorMetrics:
    """All metrics of one deployed variant, in their own registry (several may live in one process)."""

    def __init__(self, identity: Identity, class_names: dict[int, str]):
        pc = prometheus_client()
        self.identity = identity
        self.class_names = class_names
        self.registry = pc.CollectorRegistry()
        base = list(BASE_LABELS)

        def histogram(name, doc, buckets, extra=()):
            return pc.Histogram(name, doc, base + list(extra), buckets=buckets, registry=self.registry)

        def counter(name, doc, extra=()):
            return pc.Counter(name, doc, base + list(extra), registry=self.registry)

        def gauge(name, doc, extra=()):
            return pc.Gauge(name, doc, base + list(extra), registry=self.registry)

        self.request_seconds = histogram("optim_request_duration_seconds",
                                         "Time from receiving encoded images to detections, per request",
                                         LATENCY_BUCKETS)
        self.stage_seconds = histogram("optim_stage_duration_seconds", "Time per pipeline stage, per request",
                                       LATENCY_BUCKETS, ("stage",))
        self.batch_size = histogram("optim_batch_size", "Images per inference call (batch formed)", BATCH_BUCKETS)
        self.images = counter("optim_images", "Images processed")
        self.errors = counter("optim_errors", "Inputs or labels refused, by cause", ("cause",))
        self.detections_per_image = histogram("optim_detections_per_image",
                                              f"Detections (score > {DETECTION_THRESHOLD}) per image", COUNT_BUCKETS)
        self.confidence = histogram("optim_detection_confidence", "Score of each detection", CONFIDENCE_BUCKETS)
        self.box_size = histogram("optim_detection_box_size_ratio",
                                  "Detection box size: sqrt(box area / image area)", SIZE_BUCKETS)
        self.detections = counter("optim_detections", "Detections by class", ("class_name",))
        self.drift_pvalue = gauge("optim_drift_pvalue", "Latest drift test p-value per statistic", ("statistic",))
        self.drift_alert = gauge("optim_drift_alert",
                                 "1 while the Bonferroni-corrected drift test rejects the reference, else 0")
        self.rolling_map = gauge("optim_rolling_map", "Rolling mAP@[.5:.95] over recently labelled frames",
                                 ("bound",))
        self.measured_map = gauge("optim_measured_map", "The variant's offline mAP@[.5:.95] (manifest)")
        self.labelled_frames = counter("optim_labelled_frames", "Frames whose ground truth arrived")
        for cause in ("decode", "inference", "unknown_frame", "bad_label"):
            self._child(self.errors, cause=cause)  # exported at 0 from the start, so rate() sees the first one
        # Bound once: a labels() lookup per observation costs as much as the observation.
        self._request = self._child(self.request_seconds)
        self._stages = {stage: self._child(self.stage_seconds, stage=stage) for stage in STAGES}
        self._batch, self._images = self._child(self.batch_size), self._child(self.images)
        self._per_image, self._confidence = self._child(self.detections_per_image), self._child(self.confidence)
        self._box_size = self._child(self.box_size)
        self._classes: dict[int, object] = {}

    def _child(self, metric, **labels):
        return metric.labels(self.identity.variant, self.identity.manifest_hash, *labels.values())

    def observe_request(self, seconds: float, stages: dict[str, float], batch: int) -> None:
        self._request.observe(seconds)
        for stage, value in stages.items():
            self._stages[stage].observe(value)
        self._batch.observe(batch)
        self._images.inc(batch)

    def observe_outputs(self, scores: list[float], labels: list[int], size_ratios: list[float]) -> None:
        """One image's detections above DETECTION_THRESHOLD: scores, labels and box size ratios."""
        self._per_image.observe(len(scores))
        for score, label, ratio in zip(scores, labels, size_ratios):
            self._confidence.observe(score)
            self._box_size.observe(ratio)
            if label not in self._classes:
                self._classes[label] = self._child(self.detections, class_name=self.class_names.get(label, str(label)))
            self._classes[label].inc()

    def count_error(self, cause: str) -> None:
        self._child(self.errors, cause=cause).inc()

    def set_drift(self, pvalues: dict[str, float], alert: bool) -> None:
        for statistic, value in pvalues.items():
            self._child(self.drift_pvalue, statistic=statistic).set(value)
        self._child(self.drift_alert).set(1.0 if alert else 0.0)

    def set_accuracy(self, value: float, low: float, high: float, measured: float) -> None:
        for bound, number in (("estimate", value), ("lower", low), ("upper", high)):
            self._child(self.rolling_map, bound=bound).set(number)
        self._child(self.measured_map).set(measured)

    def count_labelled(self) -> None:
        self._child(self.labelled_frames).inc()

    def exposition(self) -> str:
        """The Prometheus text format of this registry."""
        return prometheus_client().generate_latest(self.registry).decode()


def start_metrics_server(metrics: DetectorMetrics, port: int, host: str = "127.0.0.1"):
    """Serve `metrics` at http://host:port/metrics in a daemon thread; returns the HTTP server (call shutdown())."""
    try:
        server, _thread = prometheus_client().start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as error:
        raise OptimError(f"cannot serve the monitoring metrics on {host}:{port} ({error})", field="--monitor-port",
                         fix="give a free port (--monitor-port / --metrics-port)") from error
    return server

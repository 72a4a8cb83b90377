"""The replay harness: a synthetic stream with scheduled shifts through a target (in-process or a server),
monitored as a deployment would be — latency, drift, rolling mAP from late labels — with every alert recorded.

Alerts (rising edges):
  latency   every `canary_every` frames a canary (the bare engine in this process on the frame's pixels) is
            timed right after the frame; the median of the last `latency_window` / `canary_every` ratios
            model time / canary time is above `latency_factor` x the median ratio over the warm-up (model time:
            the pipeline's inference stage in-process, the request latency through a server). A machine that
            other jobs slow down slows the canary as much, a regression of the deployment does not
  drift     a drift check rejects the reference (DriftConfig: family-wise alpha per check, Bonferroni)
  accuracy  the rolling mAP's upper 95% confidence bound is below the variant's measured mAP minus a tolerance"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from optim.data.synthetic import CATEGORIES
from optim.evaluation.label_map import category_of_label
from optim.monitor.accuracy import RollingAccuracy
from optim.monitor.drift import DriftConfig, DriftMonitor, Reference
from optim.monitor.stats import frame_stats
from optim.monitor.stream import ShiftWindow, StreamFrame, active, synthetic_stream

LOG = logging.getLogger("optim.monitor")
REFERENCE_SEED = 10_007  # the reference stream; replays use other seeds
BAD_AT = 20  # the frame before which inject_bad sends its bad input


@dataclass(frozen=True)
class ReplayConfig:
    frames: int = 1000
    seed: int = 1
    frames_per_clip: int = 8
    image_size: int = 128
    label_every: int = 2  # ground truth comes back for one frame in `label_every`
    label_delay: int = 40  # ... this many frames later
    accuracy_window: int = 200
    accuracy_every: int = 50
    boot: int = 200
    accuracy_tolerance: float = 0.05  # an accuracy drop smaller than this is not alerted on
    latency_window: int = 64
    latency_warmup: int = 128
    latency_factor: float = 3.0
    latency_every: int = 16
    canary_every: int = 2
    delay_factor: float = 6.0  # the latency shift adds delay_factor x the canary's p50 to inference
    drift: DriftConfig = field(default_factory=DriftConfig)


@dataclass
class Alert:
    kind: str
    frame: int
    detail: str


@dataclass
class ReplayLog:
    """Everything the report draws, per check."""

    config: dict
    schedule: list[dict]
    target: str
    variant: str
    measured_map: float
    latency: list[dict] = field(default_factory=list)  # frame, p50_ms, p99_ms
    drift: list[dict] = field(default_factory=list)  # frame, alert, pvalues
    accuracy: list[dict] = field(default_factory=list)  # frame, map, low, high
    alerts: list[dict] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    detection: list[dict] = field(default_factory=list)  # per shift window: first alert and delay
    seconds: float = 0.0


def build_reference(target, samples: int, config: ReplayConfig) -> Reference:
    """Statistics of `samples` sampled frames of an unshifted stream (the generator the variant was measured
    on), sampled as the live window is."""
    stride = config.drift.stride
    stats = []
    for frame in synthetic_stream(samples * stride, REFERENCE_SEED, (), config.image_size, config.frames_per_clip):
        if frame.index % stride == 0:
            detections, _ = target.detect(frame.encoded())
            stats.append(frame_stats(frame.image, detections))
    return Reference(stats, {"seed": REFERENCE_SEED, "samples": samples, "stride": stride,
                             "frames_per_clip": config.frames_per_clip, "image_size": config.image_size})


class _Edges:
    """Rising edges of each alert condition."""

    def __init__(self, log: ReplayLog):
        self.log, self.state = log, {}

    def update(self, kind: str, frame: int, firing: bool, detail: str) -> None:
        if firing and not self.state.get(kind):
            self.log.alerts.append(asdict(Alert(kind, frame, detail)))
            LOG.info("alert %s at frame %d: %s", kind, frame, detail)
        self.state[kind] = firing


def replay(target, manifest: dict, reference: Reference, schedule: list[ShiftWindow], config: ReplayConfig,
           canary: Callable[[bytes], float], inject_bad: bool = False) -> ReplayLog:
    """Stream config.frames frames through `target`; `canary(frame)` times the bare engine on it (seconds). With `inject_bad`, at frame BAD_AT it also sends bytes that
    are not an image, a label for a frame never seen and a malformed label: each must be counted, not crash."""
    measured = float(manifest["measured"]["accuracy"]["map"])
    log = ReplayLog(asdict(config), [asdict(w) for w in schedule], target.name, manifest["variant"], measured)
    drift = DriftMonitor(reference, config.drift, target.metrics)
    id2label = {int(k): v for k, v in manifest["id2label"].items()}
    label_map = category_of_label(id2label, [c["id"] for c in CATEGORIES], [c["name"] for c in CATEGORIES],
                                  manifest["variant"])
    accuracy = RollingAccuracy(label_map, measured, config.accuracy_window, config.accuracy_every, config.boot,
                               metrics=target.metrics)
    edges = _Edges(log)
    latencies: deque[float] = deque(maxlen=config.latency_window)
    canaries: deque[float] = deque(maxlen=config.latency_window // config.canary_every)
    ratios: deque[float] = deque(maxlen=config.latency_window // config.canary_every)
    warmup_ratio = None
    awaiting: deque[StreamFrame] = deque()
    errors = {"decode": 0}
    start = time.perf_counter()
    for frame in synthetic_stream(config.frames, config.seed, schedule, config.image_size, config.frames_per_clip):
        if inject_bad and frame.index == BAD_AT:
            errors["decode"] += _send_bad(target, b"not an image")
            accuracy.label(-1, [])
            accuracy.label(next(reversed(accuracy.pending)), [(1, ["x", 0, 1])])
        slow = active(schedule, frame.index) == "latency" and warmup_ratio is not None
        target.set_delay(config.delay_factor * float(np.median(canaries)) if slow else 0.0)
        encoded = frame.encoded()
        detections, seconds = target.detect(encoded)
        latencies.append(seconds)
        if frame.index % config.canary_every == 0:
            canaries.append(canary(encoded))
            ratios.append((target.last_inference_s or seconds) / canaries[-1])
            if warmup_ratio is None and frame.index + 1 >= config.latency_warmup:
                warmup_ratio = float(np.median(ratios))
        accuracy.record(frame.index, frame.clip, frame.image.height, frame.image.width, detections)
        check = drift.offer(lambda: frame_stats(frame.image, detections), frame.index)  # noqa: B023
        if check is not None:
            log.drift.append({"frame": frame.index, "alert": check.alert, "pvalues": check.pvalues})
            worst = min(check.pvalues, key=check.pvalues.get)
            edges.update("drift", frame.index, check.alert, f"{worst}: p = {check.pvalues[worst]:.2e}")
        if frame.index % config.latency_every == 0 and len(latencies) == config.latency_window:
            ordered = np.asarray(latencies) * 1000
            p50, p99 = float(np.percentile(ordered, 50)), float(np.percentile(ordered, 99))
            canary_p50 = float(np.median(canaries) * 1000)
            log.latency.append({"frame": frame.index, "p50_ms": p50, "p99_ms": p99, "canary_p50_ms": canary_p50})
            if warmup_ratio is not None:
                ratio = float(np.median(ratios))
                edges.update("latency", frame.index, ratio > config.latency_factor * warmup_ratio,
                             f"p50 {p50:.2f} ms; model / canary time {ratio:.2f} x (warm-up {warmup_ratio:.2f} x)")
        if frame.index % config.label_every == 0:
            awaiting.append(frame)
        while awaiting and awaiting[0].index <= frame.index - config.label_delay:
            point = accuracy.label(awaiting[0].index, awaiting.popleft().annotations)
            if point is not None:
                log.accuracy.append(asdict(point))
                edges.update("accuracy", frame.index, point.high < measured - config.accuracy_tolerance,
                             f"mAP {point.map:.3f} [{point.low:.3f}, {point.high:.3f}] vs measured {measured:.3f}")
    log.errors = {**errors, **accuracy.refused}
    log.seconds = time.perf_counter() - start
    log.detection = detection_delays(schedule, log.alerts)
    return log


def _send_bad(target, data: bytes) -> int:
    try:
        target.detect(data)
    except target.refused as error:
        LOG.warning("refused input: %s", error)
        return 1
    return 0


def detection_delays(schedule: list[ShiftWindow], alerts: list[dict], within: int = 300) -> list[dict]:
    """For each shift window: its first alert of the matching kind at or after its start, and the delay."""
    rows = []
    for window in schedule:
        kind = "latency" if window.kind == "latency" else "drift"
        first = next((a for a in alerts if a["kind"] == kind and a["frame"] >= window.start), None)
        delay = first["frame"] - window.start if first else None
        rows.append({**asdict(window), "alert_kind": kind, "first_alert": first["frame"] if first else None,
                     "delay_frames": delay, "within_target": delay is not None and delay <= within})
    return rows

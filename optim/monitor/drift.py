"""Drift without labels: a live window of sampled frames against a reference window, one test per statistic.

Continuous statistics (brightness, contrast, sharpness, detections per frame, confidences, box sizes): two-sample
Kolmogorov-Smirnov. Categorical ones (image size, class mix): chi-square on the 2 x K contingency table. A check
alerts when any p-value is below alpha / m (Bonferroni over the m statistics), so the false-alarm rate of one
check is at most `alpha`. Frames of one video are correlated, so one frame in `stride` is sampled (the tests
assume independent samples); a check runs every `check_every` samples once the window is full."""

from __future__ import annotations

import json
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

from optim.errors import OptimError
from optim.monitor.stats import FrameStats

CONTINUOUS = ("brightness", "contrast", "sharpness", "detections", "confidences", "box_sizes")
CATEGORICAL = ("image_size", "classes")
STATISTICS = CONTINUOUS + CATEGORICAL


@dataclass(frozen=True)
class DriftConfig:
    """alpha: family-wise false-alarm rate of one check; window: sampled frames compared; stride: one frame
    sampled in `stride`; check_every: samples between checks."""

    alpha: float = 1e-4
    window: int = 32
    stride: int = 8
    check_every: int = 4

    @property
    def per_test_alpha(self) -> float:
        return self.alpha / len(STATISTICS)


@dataclass
class Reference:
    """Statistics of sampled frames from the data the variant was measured on (the synthetic generator)."""

    samples: list[FrameStats]
    source: dict = field(default_factory=dict)

    def save(self, path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({"source": self.source, "samples": [s.as_dict() for s in self.samples]}))

    @classmethod
    def load(cls, path: Path) -> Reference:
        try:
            data = json.loads(Path(path).read_text())
            return cls([FrameStats(**s) for s in data["samples"]], data.get("source", {}))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise OptimError(f"not a drift reference ({error})", path=path,
                             fix="write one with: python -m optim.monitor reference REPOSITORY") from error


def _values(samples: list[FrameStats], statistic: str) -> list:
    values = []
    for sample in samples:
        value = getattr(sample, statistic)
        values.extend(value if isinstance(value, list) else [value])
    return values


def pooled(samples: list[FrameStats]) -> dict[str, list]:
    """Each statistic's values over `samples` (per-detection lists concatenated)."""
    return {statistic: _values(samples, statistic) for statistic in STATISTICS}


def p_values(reference: list[FrameStats] | dict[str, list], live: list[FrameStats]) -> dict[str, float]:
    """One p-value per statistic: KS for the continuous ones, chi-square for the categorical ones (1.0 when a
    side has no values or only one category is seen). `reference` may be given `pooled` already."""
    ref_values = reference if isinstance(reference, dict) else pooled(reference)
    result = {}
    for statistic in CONTINUOUS:
        ref, now = np.asarray(ref_values[statistic], float), np.asarray(_values(live, statistic), float)
        result[statistic] = float(scipy_stats.ks_2samp(ref, now).pvalue) if len(ref) and len(now) else 1.0
    for statistic in CATEGORICAL:
        ref, now = ref_values[statistic], _values(live, statistic)
        categories = sorted(set(ref) | set(now), key=str)
        if len(categories) < 2 or not ref or not now:
            result[statistic] = 1.0
            continue
        table = np.array([[ref.count(c) for c in categories], [now.count(c) for c in categories]])
        result[statistic] = float(scipy_stats.chi2_contingency(table).pvalue)
    return result


@dataclass
class DriftCheck:
    frame: int
    pvalues: dict[str, float]
    alert: bool

    def scores(self) -> dict[str, float]:
        """-log10 p per statistic (the report's drift score; the alert line is -log10(alpha / m))."""
        return {k: min(-math.log10(max(p, 1e-300)), 300.0) for k, p in self.pvalues.items()}


class DriftMonitor:
    """Feed every frame's statistics with `add`; returns a DriftCheck when a check ran."""

    def __init__(self, reference: Reference, config: DriftConfig = DriftConfig(), metrics=None):
        if len(reference.samples) < config.window:
            raise OptimError(f"the drift reference has {len(reference.samples)} samples, fewer than the window "
                             f"({config.window})", fix="write a larger reference (--samples)")
        self.reference = reference
        self.reference_values = pooled(reference.samples)  # pooled once, not at every check
        self.config = config
        self.metrics = metrics
        self.live: deque[FrameStats] = deque(maxlen=config.window)
        self.sampled = 0
        self.frames = 0
        self.lock = threading.Lock()  # a server's model instances share one monitor

    def add(self, stats: FrameStats, frame: int | None = None) -> DriftCheck | None:
        """One frame's statistics; `frame` is its index in the stream (default: frames seen so far)."""
        return self.offer(lambda: stats, frame)

    def offer(self, make_stats: Callable[[], FrameStats], frame: int | None = None) -> DriftCheck | None:
        """As `add`, computing the statistics only for a sampled frame (the input statistics cost more than the
        rest of the monitoring)."""
        with self.lock:
            frame = self.frames if frame is None else frame
            self.frames += 1
            if frame % self.config.stride:
                return None
            self.live.append(make_stats())
            self.sampled += 1
            if len(self.live) < self.config.window or self.sampled % self.config.check_every:
                return None
            live = list(self.live)
        pvalues = p_values(self.reference_values, live)
        check = DriftCheck(frame, pvalues, min(pvalues.values()) < self.config.per_test_alpha)
        if self.metrics is not None:
            self.metrics.set_drift(pvalues, check.alert)
        return check

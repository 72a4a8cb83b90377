"""Confidence intervals for every figure the report compares: mAP (bootstrap over images), each variant's mAP
difference to the baseline (paired bootstrap: the same image resamples for both), latency percentiles
(distribution-free order-statistic intervals from the timed samples) and speedups (bootstrap of the two
variants' timed samples). `attach_intervals` writes them into the runner's variant records."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from optim.evaluation.bootstrap import CONFIDENCE, RESAMPLES, PerImageEval, bootstrap_maps, interval, resample_weights

Z = {0.9: 1.6449, 0.95: 1.9600, 0.99: 2.5758}
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
INTERVAL_TEXT = ("Intervals: {confidence:.0%} confidence. mAP: percentile bootstrap over the evaluation images "
                 "({resamples} resamples of the {images} images with replacement, seed {seed}; each resample re-pools "
                 "pycocotools' per-image matches). Δ mAP: paired bootstrap, the same resampled images for the variant "
                 "and the baseline. Latency p50/p90/p99: distribution-free order-statistic interval from the timed "
                 "iterations (normal approximation to the binomial ranks). Speedup: bootstrap of the median ratio, "
                 "the two variants' timed iterations resampled independently ({resamples} resamples, same seed). "
                 "Two variants whose intervals overlap are reported as not distinguishable, not ranked. Timed "
                 "iterations are not independent (the machine's state drifts), so latency intervals are a lower "
                 "bound on the run-to-run spread.")


def quantile_interval(samples: Sequence[float], q: float, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Order statistics bracketing the q-quantile with about `confidence` coverage; None below 2 samples."""
    x = np.sort(np.asarray(samples, float))
    n = len(x)
    if n < 2:
        return None
    half = Z[confidence] * math.sqrt(n * q * (1 - q))
    low = max(1, math.floor(n * q - half))  # 1-based ranks
    high = min(n, math.ceil(n * q + half) + 1)
    return float(x[low - 1]), float(x[high - 1])


def ratio_interval(numerator: Sequence[float], denominator: Sequence[float], seed: int,
                   resamples: int = RESAMPLES, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Interval of median(numerator) / median(denominator), both sample sets resampled independently."""
    a, b = np.asarray(numerator, float), np.asarray(denominator, float)
    if len(a) < 2 or len(b) < 2:
        return None
    rng = np.random.default_rng(seed)
    medians_a = np.median(a[rng.integers(0, len(a), (resamples, len(a)))], axis=1)
    medians_b = np.median(b[rng.integers(0, len(b), (resamples, len(b)))], axis=1)
    return interval(medians_a / medians_b, confidence)


def overlap(a: Sequence[float] | None, b: Sequence[float] | None) -> bool | None:
    """Whether two [low, high] intervals overlap; None when either is missing."""
    if not a or not b:
        return None
    return a[0] <= b[1] and b[0] <= a[1]


def _rounded(pair: tuple[float, float] | None, digits: int = 5) -> list[float] | None:
    return None if pair is None else [round(pair[0], digits), round(pair[1], digits)]


def latency_intervals(record: dict, confidence: float = CONFIDENCE) -> dict:
    """`p50_ci_ms`, `p90_ci_ms`, `p99_ci_ms` of one batch size's latency record (from its samples_ms)."""
    samples = record.get("samples_ms") or []
    return {f"{name}_ci_ms": _rounded(quantile_interval(samples, q, confidence), 4) for name, q in PERCENTILES.items()}


def attach_intervals(variants: list[dict], baseline_name: str, evaluate: Callable[[dict], PerImageEval | None],
                     seed: int, resamples: int = RESAMPLES, confidence: float = CONFIDENCE) -> dict:
    """Add `intervals` to every successful variant record (and `*_ci_ms` to its latency records); returns how
    they were computed. `evaluate(record)` gives a variant's per-image evaluation, or None without detections."""
    ok = [v for v in variants if v.get("status") == "ok"]
    evaluations = {v["name"]: evaluate(v) for v in ok}
    # one set of resamples for every variant (pairs them); none when variants were scored on different images
    image_sets = {tuple(e.image_ids) for e in evaluations.values() if e is not None}
    weights = resample_weights(len(next(iter(image_sets))), resamples, seed) if len(image_sets) == 1 else None
    maps = {name: bootstrap_maps(e, weights) for name, e in evaluations.items() if e is not None and weights is not None}
    baseline = next((v for v in ok if v["name"] == baseline_name), None)
    base_maps = maps.get(baseline_name)
    for variant in ok:
        for record in (variant.get("latency") or {}).values():
            record.update(latency_intervals(record, confidence))
        mine = maps.get(variant["name"])
        result: dict = {"map": _rounded(interval(mine, confidence)) if mine is not None else None, "map_delta": None,
                        "speedup": {}}
        if mine is not None and base_maps is not None:
            result["map_delta"] = _rounded(interval(mine - base_maps, confidence))
        for batch, record in (variant.get("latency") or {}).items():
            base_record = ((baseline or {}).get("latency") or {}).get(batch) or {}
            ratio = ratio_interval(base_record.get("samples_ms") or [], record.get("samples_ms") or [], seed,
                                   resamples, confidence)
            result["speedup"][batch] = _rounded(ratio, 4)
        variant["intervals"] = result
    return {"confidence": confidence, "resamples": resamples, "seed": seed,
            "images": None if weights is None else weights.shape[1]}

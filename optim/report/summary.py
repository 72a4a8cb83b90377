"""Figures derived from a results dict (what the runner writes as results.json), shared by the HTML
page and the CSV: the latency batch to compare at, deltas and speedups against the baseline, and the
accuracy-vs-latency Pareto frontier. Pure Python, no heavy imports."""

from __future__ import annotations

import math
from collections.abc import Iterable
from itertools import pairwise
from typing import Any

STAGES = ("preprocess", "backbone", "encoder", "decoder", "heads", "postprocess", "other", "runtime")


def measured(value: Any) -> float | None:
    """`value` as a finite float, else None (missing, null, NaN, and pycocotools' -1 'no such objects')."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    if not math.isfinite(value) or value < 0:
        return None
    return value


def latency_by_batch(variant: dict) -> dict[int, dict]:
    """The variant's latency records keyed by batch size as int (JSON gives string keys)."""
    out: dict[int, dict] = {}
    for key, record in (variant.get("latency") or {}).items():
        try:
            out[int(key)] = record or {}
        except (TypeError, ValueError):
            continue
    return dict(sorted(out.items()))


def is_ok(variant: dict) -> bool:
    """Whether the variant ran to the end."""
    return variant.get("status") == "ok"


def compare_batch(results: dict) -> int | None:
    """The batch size latency is compared at: the smallest batch any successful variant measured."""
    sizes = [b for v in results.get("variants", []) if is_ok(v) for b in latency_by_batch(v)]
    return min(sizes) if sizes else None


def find_baseline(results: dict) -> dict | None:
    """The baseline variant if it ran successfully, else None (then nothing is compared)."""
    name = results.get("baseline")
    for variant in results.get("variants", []):
        if variant.get("name") == name and is_ok(variant):
            return variant
    return None


def p50(variant: dict, batch: int | None) -> float | None:
    """Median latency (ms) at `batch`, or None when not measured."""
    if batch is None:
        return None
    return measured(latency_by_batch(variant).get(batch, {}).get("p50_ms"))


def map_of(variant: dict | None, key: str = "map") -> float | None:
    """An accuracy figure of a variant (0..1), or None."""
    if variant is None:
        return None
    return measured((variant.get("accuracy") or {}).get(key))


def delta_points(variant: dict, baseline: dict | None) -> float | None:
    """mAP difference to the baseline in percentage points (signed)."""
    mine, base = map_of(variant), map_of(baseline)
    if mine is None or base is None:
        return None
    return (mine - base) * 100.0


def speedup(variant: dict, baseline: dict | None, batch: int | None) -> float | None:
    """baseline p50 / variant p50 at the same batch size; > 1 means faster than the baseline."""
    mine, base = p50(variant, batch), p50(baseline, batch) if baseline else None
    if not mine or not base:
        return None
    return base / mine


def pareto_frontier(points: Iterable[tuple[str, float, float]]) -> list[str]:
    """Names of the (name, latency_ms, map) points no other point dominates, fastest first.

    A point is dominated when another is at least as fast and at least as accurate, and strictly
    better in one of the two; identical points therefore both stay on the frontier. Points with a
    missing or non-finite figure are ignored.
    """
    valid = [(name, float(lat), float(acc)) for name, lat, acc in points
             if measured(lat) is not None and measured(acc) is not None]
    front = [
        p for p in valid
        if not any(q[1] <= p[1] and q[2] >= p[2] and (q[1] < p[1] or q[2] > p[2]) for q in valid)
    ]
    front.sort(key=lambda p: (p[1], -p[2], p[0]))
    return [name for name, _, _ in front]


def interval_pair(value: Any, scale: float = 1.0) -> tuple[float, float] | None:
    """A stored [low, high] interval (signed) times `scale`, or None when missing or malformed."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return None
    return value[0] * scale, value[1] * scale


def map_interval(variant: dict) -> tuple[float, float] | None:
    """95 % bootstrap interval of mAP@[.5:.95], in points (0..100)."""
    return interval_pair((variant.get("intervals") or {}).get("map"), 100.0)


def delta_interval(variant: dict) -> tuple[float, float] | None:
    """Paired-bootstrap interval of the mAP difference to the baseline, in points."""
    return interval_pair((variant.get("intervals") or {}).get("map_delta"), 100.0)


def p50_interval(variant: dict, batch: int | None) -> tuple[float, float] | None:
    """Order-statistic interval of the median latency (ms) at `batch`."""
    return None if batch is None else interval_pair(latency_by_batch(variant).get(batch, {}).get("p50_ci_ms"))


def speedup_interval(variant: dict, batch: int | None) -> tuple[float, float] | None:
    """Bootstrap interval of the speedup over the baseline at `batch`."""
    speedups = (variant.get("intervals") or {}).get("speedup") or {}
    return None if batch is None else interval_pair(speedups.get(str(batch)))


def contains(pair: tuple[float, float] | None, value: float) -> bool:
    """Whether an interval includes `value` (False when there is no interval)."""
    return pair is not None and pair[0] <= value <= pair[1]


def overlapping_neighbours(items: list[tuple[str, float, tuple[float, float] | None]]) -> list[tuple[str, str]]:
    """Pairs of neighbours, after sorting (name, value, interval) by value, whose intervals overlap: the report
    calls them not distinguishable rather than ranking them."""
    ranked = sorted((i for i in items if i[2] is not None), key=lambda i: i[1])
    return [(a[0], b[0]) for a, b in pairwise(ranked) if a[2][0] <= b[2][1] and b[2][0] <= a[2][1]]

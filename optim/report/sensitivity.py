"""The report's "Block sensitivity" heat table: per engine and quantizer, the mAP cost and the latency gain of
quantizing one DETR block at a time (see optim.sensitivity). Rendered by templates/sensitivity.html; the rows
(`sensitivity_rows`) are also what a search reads.

A variant counts as "only <block> quantized" when its quantize step keeps every other block in float
(`keep_float`), and as "all blocks" when it keeps none.
"""

from __future__ import annotations

from optim.report import fmt
from optim.report.summary import (
    compare_batch,
    contains,
    delta_interval,
    delta_points,
    find_baseline,
    is_ok,
    p50,
    speedup_interval,
)

BLOCKS = ("backbone", "encoder", "decoder", "heads")
ALL = "all"
HEAT_STEPS = (0.1, 0.5, 1.0, 2.0)  # mAP loss in points at which a cell turns one shade hotter


def quantize_step(variant: dict) -> dict | None:
    """The variant's quantize step (resolved spec form), or None."""
    steps = variant.get("steps") or (variant.get("spec") or {}).get("steps") or []
    return next((s for s in steps if s.get("kind") == "quantize"), None)


def quantized_block(variant: dict) -> str | None:
    """"backbone"... when exactly that block is quantized, "all" when none is kept in float, else None."""
    step = quantize_step(variant)
    if step is None:
        return None
    kept = set(step.get("keep_float") or [])
    if not kept:
        return ALL
    rest = set(BLOCKS) - kept
    return rest.pop() if len(rest) == 1 else None


def group_key(variant: dict) -> str:
    """Engine and quantizer, plus any prune/distill steps before it: variants that differ only in which blocks
    are quantized share a key."""
    steps = variant.get("steps") or (variant.get("spec") or {}).get("steps") or []
    step = quantize_step(variant) or {}
    before = [s.get("kind") + (f" {s.get('method')}" if s.get("method") else "") for s in steps if s.get("kind") != "quantize"]
    return " → ".join([*before, f"{variant.get('engine')} · {step.get('method')}"])


def _float_reference(results: dict, variant: dict, baseline: dict | None) -> dict | None:
    """The same engine's unquantized variant (latency gain is measured against it), else the baseline."""
    for other in results.get("variants", []):
        if is_ok(other) and other.get("engine") == variant.get("engine") and quantize_step(other) is None \
                and not [s for s in (other.get("steps") or []) if s.get("kind") != "quantize"]:
            return other
    return baseline


def sensitivity_rows(results: dict) -> list[dict]:
    """One row per engine/quantizer with a cell per block (and "all"): mAP delta to the baseline in points with
    its paired interval, and speedup of that variant over the same engine in float at the compared batch."""
    baseline, batch = find_baseline(results), compare_batch(results)
    rows: dict[str, dict] = {}
    for variant in results.get("variants", []):
        block = quantized_block(variant) if is_ok(variant) else None
        if block is None:
            continue
        reference = _float_reference(results, variant, baseline)
        mine, theirs = p50(variant, batch), p50(reference, batch) if reference else None
        row = rows.setdefault(group_key(variant), {"key": group_key(variant), "engine": variant.get("engine"),
                                                   "reference": (reference or {}).get("name"), "cells": {}})
        row["cells"][block] = {
            "variant": variant.get("name"), "delta": delta_points(variant, baseline),
            "delta_ci": delta_interval(variant),
            "speedup": theirs / mine if mine and theirs else None,
            "speedup_vs_baseline_ci": speedup_interval(variant, batch),
        }
    return [row for row in rows.values() if set(row["cells"]) & set(BLOCKS)]



def heat_class(delta: float | None) -> str:
    """heat-0 (no loss) .. heat-4 (over 2 points lost); empty when not measured."""
    if delta is None:
        return ""
    loss = -delta
    return f"heat-{sum(loss > step for step in HEAT_STEPS)}"


def _cell(cell: dict | None) -> dict | None:
    if cell is None:
        return None
    same = contains(cell["delta_ci"], 0.0)
    return {"variant": cell["variant"], "delta": fmt.signed_points(cell["delta"]),
            "delta_ci": fmt.bracket(cell["delta_ci"], signed=True), "not_distinguishable": same,
            "speedup": fmt.times(cell["speedup"]), "css": "heat-0" if same else heat_class(cell["delta"])}


def sensitivity_context(results: dict) -> dict | None:
    """Rows of the heat table; None when no variant quantizes a single block."""
    rows = sensitivity_rows(results)
    if not rows:
        return None
    return {"blocks": [*BLOCKS, ALL], "batch": compare_batch(results),
            "rows": [{"key": row["key"], "reference": row["reference"],
                      "cells": [_cell(row["cells"].get(block)) for block in (*BLOCKS, ALL)]} for row in rows]}

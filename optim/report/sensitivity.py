"""The report's "Sensitivity" heat table: per engine and quantizer, the mAP cost and the latency gain of
quantizing one DETR block, or one unit (a backbone stage, an encoder or decoder layer, a head), at a time (see
optim.sensitivity). Rendered by templates/sensitivity.html; the rows (`sensitivity_rows`) are also what a
search reads.

A variant counts as "only <block> quantized" when its quantize step keeps every other block in float
(`keep_float`), as "only <unit> quantized" when it keeps every other unit that the variants of its row name,
and as "all" when it keeps none.
"""

from __future__ import annotations

from optim.models.blocks import BLOCKS, unit_order
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

ALL = "all"
HEAT_STEPS = (0.1, 0.5, 1.0, 2.0)  # mAP loss in points at which a cell turns one shade hotter


def quantize_step(variant: dict) -> dict | None:
    """The variant's quantize step (resolved spec form), or None."""
    steps = variant.get("steps") or (variant.get("spec") or {}).get("steps") or []
    return next((s for s in steps if s.get("kind") == "quantize"), None)


def kept_float(variant: dict) -> set[str]:
    """The blocks and units the variant's quantize step keeps in float."""
    return set((quantize_step(variant) or {}).get("keep_float") or [])


def quantized_unit(variant: dict, units: set[str] | frozenset[str] = frozenset()) -> str | None:
    """"backbone"... when exactly that block is quantized, "encoder.layer1"... when exactly that unit is, "all"
    when none is kept in float, else None. `units`: every unit the model has (from the keep_float lists of
    the variant's row), since a unit quantized is one that no keep_float names."""
    if quantize_step(variant) is None:
        return None
    kept = kept_float(variant)
    if not kept:
        return ALL
    if kept <= set(BLOCKS):
        rest = set(BLOCKS) - kept
        return rest.pop() if len(rest) == 1 else None
    open_blocks = [block for block in BLOCKS if block not in kept]
    quantized = {unit for unit in units if unit.split(".")[0] in open_blocks and unit not in kept}
    covered = all(any(unit.startswith(block + ".") for unit in units) for block in open_blocks)
    return quantized.pop() if covered and len(quantized) == 1 else None


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
    """One row per engine/quantizer with a cell per block or unit (and "all"): mAP delta to the baseline in
    points with its paired interval, and speedup of that variant over the same engine in float at the compared
    batch."""
    baseline, batch = find_baseline(results), compare_batch(results)
    units: dict[str, set[str]] = {}
    for variant in results.get("variants", []):
        if quantize_step(variant) is not None:
            units.setdefault(group_key(variant), set()).update(n for n in kept_float(variant) if "." in n)
    rows: dict[str, dict] = {}
    for variant in results.get("variants", []):
        key = group_key(variant)
        unit = quantized_unit(variant, units.get(key, set())) if is_ok(variant) else None
        if unit is None:
            continue
        reference = _float_reference(results, variant, baseline)
        mine, theirs = p50(variant, batch), p50(reference, batch) if reference else None
        row = rows.setdefault(key, {"key": key, "engine": variant.get("engine"),
                                    "reference": (reference or {}).get("name"), "cells": {}})
        row["cells"][unit] = {
            "variant": variant.get("name"), "delta": delta_points(variant, baseline),
            "delta_ci": delta_interval(variant),
            "speedup": theirs / mine if mine and theirs else None,
            "speedup_vs_baseline_ci": speedup_interval(variant, batch),
        }
    return [row for row in rows.values() if set(row["cells"]) - {ALL}]


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
    """Columns (blocks or units, grouped by block, then "all") and rows of the heat table; None when no
    variant quantizes a single block or unit."""
    rows = sensitivity_rows(results)
    if not rows:
        return None
    columns = sorted({name for row in rows for name in row["cells"]} - {ALL}, key=unit_order)
    groups: list[dict] = []
    for name in columns:
        block = name.split(".")[0]
        if groups and groups[-1]["block"] == block:
            groups[-1]["span"] += 1
        else:
            groups.append({"block": block, "span": 1})
    return {"columns": [*columns, ALL], "groups": [*groups, {"block": "", "span": 1}],
            "fine": any("." in name for name in columns), "batch": compare_batch(results),
            "rows": [{"key": row["key"], "reference": row["reference"],
                      "cells": [_cell(row["cells"].get(name)) for name in (*columns, ALL)]} for row in rows]}

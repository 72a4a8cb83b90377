"""The experiment report: one self-contained, offline HTML page (inline CSS, hand-written JS, inline SVG).

`write_report(results, out_dir)` renders the results dict the runner writes as results.json through the Jinja2
templates in templates/ with autoescape on: every string from the results (variant names and error texts are user
input) is escaped by the template engine. This module only turns the results into the data the templates show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from optim.atomic import write_text_atomic
from optim.machine_load import BUSY_WARNING
from optim.report import fmt
from optim.report.agreement import agreement_context
from optim.report.cells import Cell, Column
from optim.report.fmt import DASH
from optim.report.parallel import parallel_context
from optim.report.search import deployment, loss_bound, search_context
from optim.report.sensitivity import sensitivity_context
from optim.report.serving_html import serving_section
from optim.report.summary import (
    compare_batch,
    contains,
    delta_interval,
    delta_points,
    find_baseline,
    is_ok,
    latency_by_batch,
    map_interval,
    map_of,
    measured,
    overlapping_neighbours,
    p50,
    p50_interval,
    pareto_frontier,
    speedup,
    speedup_interval,
)
from optim.report.svg import latency_boxplots, stage_bars, stage_legend
from optim.report.variant_html import anchor, variant_context

ENGINE_COLORS = {
    "pytorch": "#e15759", "torch_compile": "#f28e2b", "onnxruntime": "#4e79a7", "openvino": "#b07aa1",
    "tensorrt": "#59a14f", "torch_tensorrt": "#8cd17d",
}
OTHER_COLOR = "#9c755f"
CLOSE_POINTS = 1.0  # "within 1 mAP point of the baseline" for the headline card
NAV = [("summary", "Summary"), ("tradeoff", "Accuracy vs latency"), ("distributions", "Latency"),
       ("stages", "Stages"), ("variants", "Variants"), ("method", "Method & environment")]


@cache
def _environment() -> Environment:
    # finalize: a missing value (None) prints as nothing, as "not recorded" does everywhere in the report
    return Environment(loader=PackageLoader("optim.report", "templates"), autoescape=True, undefined=StrictUndefined,
                       finalize=lambda value: "" if value is None else value)


def _asset(name: str) -> Markup:
    """report.css / report.js, shipped with the package and inlined as they are (trusted, not user input)."""
    return Markup(resources.files("optim.report").joinpath(name).read_text(encoding="utf-8"))


class RowContext(NamedTuple):
    """What a summary-table cell is computed from."""

    variant: dict
    baseline: dict | None
    batch: int | None


def _number(value: float | None, text: str, css: str = "", note: str = "") -> Cell:
    return Cell(text, note=note, sort="" if value is None else f"{value:.6g}", css=css)


def _speed_css(ratio: float | None) -> str:
    return "" if ratio is None else "gain" if ratio >= 1.05 else "loss" if ratio < 0.95 else "flat"


def _largest_batch_throughput(variant: dict) -> tuple[int, float | None] | None:
    latency = latency_by_batch(variant)
    if not latency:
        return None
    batch = max(latency)
    return batch, measured(latency[batch].get("throughput_ips"))


def _throughput(row: RowContext) -> Cell:
    largest = _largest_batch_throughput(row.variant)
    if not largest:
        return _number(None, DASH)
    return _number(largest[1], fmt.ms(largest[1]), note=f"bs {largest[0]}")


def _p99(row: RowContext) -> Cell:
    record = latency_by_batch(row.variant).get(row.batch, {}) if row.batch is not None else {}
    value = measured(record.get("p99_ms"))
    return _number(value, fmt.ms(value))


def _machine_cell(row: RowContext) -> Cell:
    """Which machine measured the variant: the hostname of its accuracy (and of its latency, where another one
    timed it), with the CPU model as a note."""
    where = row.variant.get("measured_on") or {}
    accuracy, latency = where.get("accuracy") or {}, where.get("latency") or {}
    if not accuracy:
        return Cell(DASH)
    host = accuracy.get("hostname", "?")
    text = host if latency.get("hostname", host) == host else f"accuracy {host} · latency {latency['hostname']}"
    note = " · ".join(filter(None, [accuracy.get("cpu"), accuracy.get("gpu"), "" if latency else "accuracy only"]))
    return Cell(text, note=note, sort=text)


NOT_DISTINGUISHABLE = "n.d."  # the interval contains "no difference": shown instead of a rank


def _map_cell(row: RowContext) -> Cell:
    return _number(map_of(row.variant), fmt.ap((row.variant.get("accuracy") or {}).get("map")), "strong",
                   note=fmt.bracket(map_interval(row.variant)))


def _delta_cell(row: RowContext) -> Cell:
    delta, pair = delta_points(row.variant, row.baseline), delta_interval(row.variant)
    if row.variant is row.baseline:
        return _number(delta, fmt.signed_points(delta), "delta flat")
    same = contains(pair, 0.0)
    note = " ".join(filter(None, [fmt.bracket(pair, signed=True), NOT_DISTINGUISHABLE if same else ""]))
    return _number(delta, fmt.signed_points(delta), "delta " + ("flat" if same else fmt.delta_class(delta)), note=note)


def _p50_cell(row: RowContext) -> Cell:
    value = p50(row.variant, row.batch)
    digits = 2 if value is not None and value < 10 else 1
    return _number(value, fmt.ms(value), "strong", note=fmt.bracket(p50_interval(row.variant, row.batch), digits))


def _speedup_cell(row: RowContext) -> Cell:
    ratio, pair = speedup(row.variant, row.baseline, row.batch), speedup_interval(row.variant, row.batch)
    if row.variant is row.baseline:
        return _number(ratio, fmt.times(ratio), "speed flat")
    same = contains(pair, 1.0)
    note = " ".join(filter(None, [fmt.bracket(pair, 2), NOT_DISTINGUISHABLE if same else ""]))
    return _number(ratio, fmt.times(ratio), "speed " + ("flat" if same else _speed_css(ratio)), note=note)


@dataclass(frozen=True)
class SummaryColumn:
    """A figure column of the summary table: its header and how to compute its cell for a successful variant.
    `sub` may name the compared batch size as {bs}."""

    column: Column
    cell: Callable[[RowContext], Cell]


# The summary table's figure columns, in order: adding a column to the report is one entry here.
SUMMARY_COLUMNS = [
    SummaryColumn(Column("mAP", "@[.5:.95] [95 % CI]", "num"), _map_cell),
    SummaryColumn(Column("Δ mAP", "pts vs baseline [paired CI]", "num"), _delta_cell),
    SummaryColumn(Column("mAP", "@.5", "num"), lambda r: _number(
        map_of(r.variant, "map_50"), fmt.ap((r.variant.get("accuracy") or {}).get("map_50")))),
    SummaryColumn(Column("Fidelity", "", "num"), lambda r: _number(
        map_of(r.variant, "fidelity"), fmt.percent((r.variant.get("accuracy") or {}).get("fidelity")))),
    SummaryColumn(Column("p50", "ms{bs} [95 % CI]", "num"), _p50_cell),
    SummaryColumn(Column("p99", "ms{bs}", "num"), _p99),
    SummaryColumn(Column("Speedup", "vs baseline p50 [95 % CI]", "num"), _speedup_cell),
    SummaryColumn(Column("Throughput", "img/s, largest bs", "num"), _throughput),
    SummaryColumn(Column("Size", "MB on disk", "num"), lambda r: _number(
        s := measured(r.variant.get("model_size_bytes")), fmt.megabytes(s))),
    SummaryColumn(Column("Params", "", "num"), lambda r: _number(
        measured(r.variant.get("params")), fmt.count(r.variant.get("params")))),
    SummaryColumn(Column("Build", "", "num"), lambda r: _number(
        measured(r.variant.get("build_seconds")), fmt.seconds(r.variant.get("build_seconds")))),
    SummaryColumn(Column("Measured on", "host (CPU)"), _machine_cell),
]
NAME_COLUMNS = [Column("Variant"), Column("Engine"), Column("Precision")]


def _header(results: dict, out_dir: Path | None) -> dict:
    model = results.get("model") or {}
    env = results.get("environment") or {}
    size = model.get("input_size")
    software = " · ".join(f"{label} {env[key]}" for key, label in
                          (("torch", "torch"), ("onnxruntime", "ONNX Runtime"), ("openvino", "OpenVINO"),
                           ("python", "Python")) if env.get(key))
    cores = f" · {env['cores']} cores" if env.get("cores") else ""
    return {
        "experiment": results.get("experiment", "experiment"), "description": results.get("description"),
        "model": model.get("name", DASH), "source": model.get("source", ""),
        "input_size": f"{size[0]}×{size[1]}" if isinstance(size, (list, tuple)) and len(size) == 2 else DASH,
        "baseline": results.get("baseline", DASH),
        "machine": f"{env.get('cpu') or env.get('machine') or 'unknown CPU'}{cores}",
        "gpu": env.get("gpu") or "no GPU", "software": software or DASH,
        "generated": results.get("generated_at", DASH),
        "downloads": [name for name in ("results.json", "results.csv")
                      if out_dir is not None and (out_dir / name).is_file()],
        "untrained": model.get("trained") is False,
    }


def _kpis(results: dict, baseline: dict | None, batch: int | None) -> list[dict]:
    variants = results.get("variants", [])
    ok = [v for v in variants if is_ok(v)]
    failed = len(variants) - len(ok)
    cards = []
    if baseline is not None:
        cards.append({"label": "Baseline", "value": baseline.get("name"),
                      "detail": f"mAP {fmt.ap(map_of(baseline))} · p50 {fmt.ms(p50(baseline, batch))} ms"})
    # only variants faster than the baseline are headline material
    faster = [v for v in ok if v is not baseline and (speedup(v, baseline, batch) or 0) > 1.0]
    timed = any(latency_by_batch(v) for v in ok)  # an accuracy-only run has no fastest variant
    if baseline is not None and timed and not faster:
        cards.append({"label": "Fastest", "value": baseline.get("name"), "detail": "no variant beats the baseline's p50"})
    if faster:
        fastest = max(faster, key=lambda v: speedup(v, baseline, batch))
        gain = lambda v: (f"{fmt.times(speedup(v, baseline, batch))} speedup · "
                          f"{fmt.signed_points(delta_points(v, baseline))} mAP pts")
        cards.append({"label": "Fastest", "value": fastest.get("name"), "detail": gain(fastest) + _tied(fastest, faster, batch)})
        # "within 1 point" needs a trained model: with random weights every mAP is noise
        # with intervals, "within" means the paired 95 % upper bound of the loss, not the point estimate
        close = [v for v in faster if (d := delta_points(v, baseline)) is not None and d >= -CLOSE_POINTS
                 and ((bound := loss_bound(v)) is None or bound <= CLOSE_POINTS)
                 and (results.get("model") or {}).get("trained") is not False]
        best = max(close, key=lambda v: speedup(v, baseline, batch)) if close else None
        if best is fastest:
            cards[-1]["label"] = f"Fastest, within {CLOSE_POINTS:g} mAP pt"
        elif best is not None:
            cards.append({"label": f"Fastest within {CLOSE_POINTS:g} mAP pt", "value": best.get("name"),
                          "detail": gain(best) + _tied(best, close, batch)})
    deploy = deployment(results)
    if deploy is not None:
        cards.insert(0, {"label": "Deploy", "value": deploy["name"] or "—", "detail": deploy["why"]})
    cards.append({"label": "Variants", "value": f"{len(ok)} measured",
                  "detail": f"{failed} failed" if failed else "none failed", "bad": bool(failed)})
    return cards


def _tied(winner: dict, others: list[dict], batch: int | None) -> str:
    """" · not distinguishable from A, B" when other variants' speedup intervals overlap the winner's."""
    mine = speedup_interval(winner, batch)
    tied = [v.get("name") for v in others if v is not winner and mine is not None
            and (theirs := speedup_interval(v, batch)) is not None and theirs[0] <= mine[1] and mine[0] <= theirs[1]]
    return f" · not distinguishable from {', '.join(tied)} (speedup intervals overlap)" if tied else ""


def _ties(results: dict, batch: int | None) -> dict:
    """Neighbours in p50 and in mAP whose intervals overlap: listed as not distinguishable, not ranked."""
    ok = [v for v in results.get("variants", []) if is_ok(v)]
    latency = [(v["name"], p, p50_interval(v, batch)) for v in ok if (p := p50(v, batch)) is not None]
    accuracy = [(v["name"], m, map_interval(v)) for v in ok if (m := map_of(v)) is not None]
    return {"latency": [" ≈ ".join(pair) for pair in overlapping_neighbours(latency)],
            "accuracy": [" ≈ ".join(pair) for pair in overlapping_neighbours(accuracy)]}


def _summary(results: dict, baseline: dict | None, batch: int | None, frontier: list[str]) -> dict:
    bs = f", bs {batch}" if batch is not None else ""
    columns = NAME_COLUMNS + [Column(c.column.label, c.column.sub.format(bs=bs), c.column.kind)
                              for c in SUMMARY_COLUMNS]
    rows = []
    for index, variant in enumerate(results.get("variants", [])):
        failed = not is_ok(variant)
        context = RowContext(variant, baseline, batch)
        rows.append({
            "name": variant.get("name", ""), "anchor": anchor(index), "engine": variant.get("engine"),
            "precision": variant.get("precision"), "is_baseline": variant.get("name", "") == results.get("baseline"),
            "pareto": variant.get("name", "") in frontier, "failed": failed,
            "error": variant.get("error") or "no reason recorded",
            "cells": [] if failed else [column.cell(context) for column in SUMMARY_COLUMNS],
        })
    rows.sort(key=lambda row: row["failed"])  # failed variants last; order otherwise as run
    return {"columns": columns, "rows": rows, "value_columns": len(SUMMARY_COLUMNS), "ties": _ties(results, batch),
            "not_distinguishable": NOT_DISTINGUISHABLE}


def _chart_data(results: dict, baseline: dict | None, batch: int | None) -> tuple[dict, list[str]]:
    points = []
    for index, variant in enumerate(results.get("variants", [])):
        latency, accuracy = p50(variant, batch), map_of(variant)
        if not is_ok(variant) or latency is None or accuracy is None:
            continue
        record = latency_by_batch(variant).get(batch, {})
        points.append({
            "name": str(variant.get("name", "")), "anchor": anchor(index),
            "engine": str(variant.get("engine", "")), "precision": str(variant.get("precision", "")),
            "color": ENGINE_COLORS.get(variant.get("engine"), OTHER_COLOR),
            "p50": latency, "p99": measured(record.get("p99_ms")), "map": accuracy * 100,
            "p50_ci": p50_interval(variant, batch), "map_ci": map_interval(variant),
            "delta_ci": delta_interval(variant), "speedup_ci": speedup_interval(variant, batch),
            "map50": (m * 100 if (m := map_of(variant, "map_50")) is not None else None),
            "delta": delta_points(variant, baseline), "speedup": speedup(variant, baseline, batch),
            "size_mb": (s / 1e6 if (s := measured(variant.get("model_size_bytes"))) is not None else None),
            "baseline": variant.get("name") == results.get("baseline"),
        })
    frontier = pareto_frontier((p["name"], p["p50"], p["map"]) for p in points)
    for point in points:
        point["pareto"] = point["name"] in frontier
    return {"batch": batch, "points": points, "frontier": frontier}, frontier


def _tradeoff(data: dict) -> dict:
    return {"points": data["points"], "batch": data["batch"], "frontier": data["frontier"],
            "engines": sorted({p["engine"]: p["color"] for p in data["points"]}.items()),
            # JSON for a <script> block: fmt.script_json leaves no '<', '>' or '&' that could end it
            "data_json": Markup(fmt.script_json(data))}


def _distributions(results: dict, batch: int | None) -> dict:
    if batch is None:
        return {"batch": None, "chart": None}
    series = [(v.get("name", ""), latency_by_batch(v)[batch]) for v in results.get("variants", [])
              if is_ok(v) and batch in latency_by_batch(v)]
    return {"batch": batch, "chart": Markup(latency_boxplots(series, batch)) if series else None}  # svg.py escapes


def _stage_overview(results: dict) -> tuple[dict, float]:
    series = [(v.get("name", ""), v["stages"]) for v in results.get("variants", []) if v.get("stages")]
    totals = [sum(x for x in ((s.get("stages_ms") or {}).values()) if measured(x)) for _, s in series]
    scale = max(totals, default=0.0)
    return {"legend": Markup(stage_legend()),
            "bars": Markup(stage_bars(series, scale)) if series else None}, scale


def _machine_during_timing(results: dict) -> dict | None:
    """What the machine was doing while the latency figures were timed (background CPU, speed probe)."""
    figures = [(v.get("name", ""), batch, record) for v in results.get("variants", []) if is_ok(v)
               for batch, record in latency_by_batch(v).items()]
    loads = [(load, name, batch) for name, batch, record in figures
             if (load := measured(record.get("background_cpu"))) is not None]
    probes = [probe for _, _, record in figures if (probe := measured(record.get("probe_ms")))]
    if not loads:
        return None
    load, name, batch = max(loads)
    text = (f"Other processes used at most {load:.0%} of the CPU while a figure was timed ({name} at batch "
            f"{batch}).")
    if probes:
        text += (f" The machine speed probe (a fixed matrix product timed between chunks of iterations) took "
                 f"{min(probes):.3f}-{max(probes):.3f} ms around the figures.")
    fractions = [fraction for _, _, record in figures if (fraction := measured(record.get("steady_fraction"))) is not None]
    if fractions:
        text += (f" On average {1 - sum(fractions) / len(fractions):.0%} of a figure's timed iterations ran with the "
                 "machine in a slower state and were set aside (kept only where no steady ones were left).")
    unsteady = sorted(f"{n} @bs{b}" for n, b, record in figures if record.get("steady") is False)
    if unsteady:
        return {"kind": "unsteady", "text": text, "figures": ", ".join(unsteady)}
    if load > BUSY_WARNING:
        busy = sorted(f"{n} @bs{b}" for value, n, b in loads if value > BUSY_WARNING)
        return {"kind": "busy", "text": text, "figures": ", ".join(busy), "limit": f"{BUSY_WARNING:.0%}"}
    return {"kind": "plain", "text": text}


def _paragraphs(text: object) -> list[str]:
    return [b.strip() for b in str(text or "").split("\n\n") if b.strip()]


def _method(results: dict) -> dict:
    measurement = results.get("measurement") or {}
    return {
        "latency": _paragraphs(measurement.get("latency")), "accuracy": _paragraphs(measurement.get("accuracy")),
        "intervals": _paragraphs(measurement.get("intervals")), "machines": _paragraphs(measurement.get("machines")),
        "timing": _machine_during_timing(results),
        "environment": list((results.get("environment") or {}).items()),
        "model": list((results.get("model") or {}).items()),
        "spec_json": fmt.json_text(results.get("spec")),
    }


def render_report(results: dict, out_dir: Path | None = None) -> str:
    """The report page as an HTML string; `out_dir` (where it will live) makes file links relative."""
    out_dir = Path(out_dir) if out_dir is not None else None
    baseline = find_baseline(results)
    batch = compare_batch(results)
    data, frontier = _chart_data(results, baseline, batch)
    stages, scale = _stage_overview(results)
    variants = results.get("variants", [])
    return _environment().get_template("report.html").render(
        title=f"{results.get('experiment', 'experiment')} — DETR optimization report",
        css=_asset("report.css"), js=_asset("report.js"), nav=NAV, header=_header(results, out_dir),
        kpis=_kpis(results, baseline, batch), has_baseline=baseline is not None,
        summary=_summary(results, baseline, batch, frontier), tradeoff=_tradeoff(data),
        distributions=_distributions(results, batch), agreement=agreement_context(results),
        sensitivity=sensitivity_context(results), search=search_context(results), stages=stages,
        parallel=parallel_context(results),
        variants=[variant_context(i, v, baseline_name=results.get("baseline"), stage_scale_ms=scale, out_dir=out_dir)
                  for i, v in enumerate(variants)],
        variants_have_stages=any(v.get("stages") for v in variants), method=_method(results),
        serving=Markup(serving_section(results)),  # serving_html escapes every string it writes
    ) + "\n"


def write_report(results: dict, out_dir: Path) -> Path:
    """Write out_dir/index.html for `results` (the results.json dict) and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    write_text_atomic(path, render_report(results, out_dir))
    return path

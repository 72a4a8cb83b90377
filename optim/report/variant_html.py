"""The per-variant section of the report, as data for templates/variant.html: figures, latency per batch, stage
breakdown, top ops, INT8 coverage, profiler links, notes and the variant's spec."""

from __future__ import annotations

from pathlib import Path

from markupsafe import Markup

from optim.report import fmt
from optim.report.cells import Cell, Column, Table
from optim.report.fmt import DASH
from optim.report.summary import interval_pair, is_ok, latency_by_batch, map_interval, measured
from optim.report.svg import stage_bars

STEP_DETAILS = {  # the few fields that tell steps apart at a glance; the rest is in the spec JSON
    "prune": ("ratio", "keep", "importance", "finetune_steps"),
    "distill": ("teacher", "steps"),
    "quantize": ("calibration", "per_channel", "keep_float"),
}
# The latency table: one column per entry (header, cell text of a batch's latency record).
LATENCY_COLUMNS: list[tuple[Column, object]] = [
    (Column("batch"), lambda batch, r: batch),
    (Column("p50 ms"), lambda batch, r: _with_interval(r, "p50")),
    (Column("p90 ms"), lambda batch, r: _with_interval(r, "p90")),
    (Column("p99 ms"), lambda batch, r: _with_interval(r, "p99")),
    (Column("mean ± std ms"), lambda batch, r: f"{fmt.ms(r.get('mean_ms'))} ± {fmt.ms(r.get('std_ms'))}"),
    (Column("min ms"), lambda batch, r: fmt.ms(r.get("min_ms"))),
    (Column("images/s"), lambda batch, r: fmt.ms(r.get("throughput_ips"))),
    (Column("iterations"), lambda batch, r: r.get("iters", DASH)),
]
def _with_interval(record: dict, name: str) -> str:
    """A latency percentile with its 95 % interval, e.g. "4.04 [4.00, 4.24]"."""
    value, pair = record.get(f"{name}_ms"), interval_pair(record.get(f"{name}_ci_ms"))
    digits = 2 if (measured(value) or 0) < 10 else 1
    return " ".join(filter(None, [fmt.ms(value), fmt.bracket(pair, digits)]))


TOP_OP_COLUMNS = [Column("node"), Column("op"), Column("stage"), Column("ms"), Column("share"), Column("precision")]


def anchor(index: int) -> str:
    """The id of the index-th variant's section (names are user text, so they are not used as ids)."""
    return f"variant-{index}"


def _steps(variant: dict) -> list[dict]:
    steps = []
    for step in variant.get("steps") or []:
        kind = step.get("kind", "?")
        details = [f"{key}={step[key]}" for key in STEP_DETAILS.get(kind, ()) if step.get(key) not in (None, [], 0)]
        steps.append({"kind": kind, "method": step.get("method", ""), "details": ", ".join(details)})
    return steps


def _facts(variant: dict) -> list[tuple[str, object]]:
    accuracy = variant.get("accuracy") or {}
    return [
        ("mAP@[.5:.95]", " ".join(filter(None, [fmt.ap(accuracy.get("map")), fmt.bracket(map_interval(variant))]))), ("mAP@.5", fmt.ap(accuracy.get("map_50"))),
        ("mAP@.75", fmt.ap(accuracy.get("map_75"))),
        ("mAP S / M / L", " / ".join(fmt.ap(accuracy.get(k)) for k in ("map_small", "map_medium", "map_large"))),
        ("fidelity", fmt.percent(accuracy.get("fidelity"))), ("eval images", accuracy.get("images", DASH)),
        ("build", fmt.seconds(variant.get("build_seconds"))),
        ("first inference", fmt.ms(variant.get("first_inference_ms")) + " ms"),
        ("size on disk", fmt.megabytes(variant.get("model_size_bytes")) + " MB"),
        # the runner records the process RSS after the run; a peak, where a runner measures it, wins
        ("peak RSS" if variant.get("peak_rss_mb") is not None else "RSS after run",
         fmt.ms(variant.get("peak_rss_mb", variant.get("rss_mb"))) + " MB"),
        ("params", fmt.count(variant.get("params"))), ("FLOPs / image", fmt.count(variant.get("flops"))),
        ("threads", variant.get("threads", DASH)),
    ]


def _latency_table(variant: dict) -> Table | None:
    latency = latency_by_batch(variant)
    if not latency:
        return None
    return Table([column for column, _ in LATENCY_COLUMNS],
                 [[Cell(text(batch, record)) for _, text in LATENCY_COLUMNS] for batch, record in latency.items()])


def _op_coverage(stages: dict, precision: str | None) -> dict | None:
    int8, floating = measured(stages.get("int8_ops")), measured(stages.get("float_ops"))
    if not (precision == "int8" or int8):  # an op count of a float model says nothing
        return None
    int8, floating = int8 or 0, floating or 0
    return {"int8": int8, "float": floating, "share": int8 / (int8 + floating) if int8 + floating else 0.0}


def _top_ops(stages: dict) -> Table | None:
    ops = stages.get("top_ops") or []
    if not ops:
        return None
    total = measured(stages.get("total_ms"))
    share = lambda op: fmt.percent(measured(op.get("ms")) / total) if total and measured(op.get("ms")) else DASH
    rows = [[Cell(op.get("name"), css="mono"), Cell(op.get("op")), Cell(op.get("stage")), Cell(fmt.ms(op.get("ms"))),
             Cell(share(op)), Cell(DASH, badge=op.get("precision"))] for op in ops]
    return Table(TOP_OP_COLUMNS, rows)


def _stages(variant: dict, scale_ms: float) -> dict | None:
    stages = variant.get("stages")
    if not stages:
        return None
    return {"bars": Markup(stage_bars([(variant.get("name", ""), stages)], scale_ms, labels=False)),  # svg.py escapes
            "coverage": _op_coverage(stages, variant.get("precision")),
            "fallback_warning": stages.get("fallback_warning"), "top_ops": _top_ops(stages)}


def _links(variant: dict, out_dir: Path | None) -> list[dict]:
    return [{"label": label, "path": path, "href": fmt.local_href(path, out_dir)}
            for label, path in (variant.get("profile_files") or {}).items()]


def variant_context(index: int, variant: dict, *, baseline_name: str | None, stage_scale_ms: float,
                    out_dir: Path | None) -> dict:
    """What templates/variant.html shows of one variant, successful or failed."""
    name = variant.get("name", f"variant {index}")
    ok = is_ok(variant)
    measured_any = ok or variant.get("accuracy") or variant.get("latency")
    return {
        "anchor": anchor(index), "name": name, "ok": ok, "precision": variant.get("precision"),
        "engine": variant.get("engine"), "device": variant.get("device"), "is_baseline": name == baseline_name,
        "finished": variant.get("finished_at"), "steps": _steps(variant),
        "error": variant.get("error") or "no reason recorded",
        "facts": _facts(variant) if measured_any else None,
        "latency": _latency_table(variant), "stages": _stages(variant, stage_scale_ms) if measured_any else None,
        "profile_links": _links(variant, out_dir), "notes": [n for n in variant.get("notes") or [] if n],
        "spec_json": fmt.json_text(variant.get("spec")),
    }

"""The per-variant section of the report: figures, latency per batch, stage breakdown, top ops,
INT8 coverage, profiler links, notes and the variant's spec."""

from __future__ import annotations

from pathlib import Path

from optim.report import fmt
from optim.report.fmt import DASH, e
from optim.report.summary import is_ok, latency_by_batch, measured
from optim.report.svg import stage_bars

STEP_DETAILS = {  # the few fields that tell steps apart at a glance; the rest is in the spec JSON
    "prune": ("ratio", "keep", "importance", "finetune_steps"),
    "distill": ("teacher", "steps"),
    "quantize": ("calibration", "per_channel", "keep_float"),
}


def anchor(index: int) -> str:
    """The id of the index-th variant's section (names are user text, so they are not used as ids)."""
    return f"variant-{index}"


def precision_badge(precision: str | None) -> str:
    """A colored pill for fp32 / fp16 / bf16 / int8 / fp8."""
    text = precision or "?"
    return f'<span class="badge prec-{e(text.lower())}">{e(text)}</span>'


def _steps(variant: dict) -> str:
    chips = []
    for step in variant.get("steps") or []:
        kind = step.get("kind", "?")
        details = [f"{key}={step[key]}" for key in STEP_DETAILS.get(kind, ()) if step.get(key) not in (None, [], 0)]
        chips.append(f'<span class="step step-{e(kind)}"><b>{e(kind)}</b> {e(step.get("method", ""))}'
                     f'{"<small>" + e(", ".join(details)) + "</small>" if details else ""}</span>')
    device = f" · {e(variant['device'])}" if variant.get("device") else ""
    engine = f'<span class="step step-engine"><b>engine</b> {e(variant.get("engine"))}{device}</span>'
    return '<div class="chain">' + '<span class="arrow">→</span>'.join(chips + [engine]) + "</div>"


def _facts(variant: dict) -> str:
    accuracy = variant.get("accuracy") or {}
    items = [
        ("mAP@[.5:.95]", fmt.ap(accuracy.get("map"))), ("mAP@.5", fmt.ap(accuracy.get("map_50"))),
        ("mAP@.75", fmt.ap(accuracy.get("map_75"))),
        ("mAP S / M / L", " / ".join(fmt.ap(accuracy.get(k)) for k in ("map_small", "map_medium", "map_large"))),
        ("fidelity", fmt.percent(accuracy.get("fidelity"))), ("eval images", e(accuracy.get("images", DASH))),
        ("build", fmt.seconds(variant.get("build_seconds"))),
        ("first inference", fmt.ms(variant.get("first_inference_ms")) + " ms"),
        ("size on disk", fmt.megabytes(variant.get("model_size_bytes")) + " MB"),
        # the runner records the process RSS after the run; a peak, where a runner measures it, wins
        ("peak RSS" if variant.get("peak_rss_mb") is not None else "RSS after run",
         fmt.ms(variant.get("peak_rss_mb", variant.get("rss_mb"))) + " MB"),
        ("params", fmt.count(variant.get("params"))), ("FLOPs / image", fmt.count(variant.get("flops"))),
        ("threads", e(variant.get("threads", DASH))),
    ]
    cells = "".join(f'<div class="fact"><span>{label}</span><b>{value}</b></div>' for label, value in items)
    return f'<div class="facts">{cells}</div>'


def _latency_table(variant: dict) -> str:
    latency = latency_by_batch(variant)
    if not latency:
        return '<p class="muted">Latency was not measured.</p>'
    rows = "".join(
        f"<tr><td>{batch}</td><td>{fmt.ms(r.get('p50_ms'))}</td><td>{fmt.ms(r.get('p90_ms'))}</td>"
        f"<td>{fmt.ms(r.get('p99_ms'))}</td><td>{fmt.ms(r.get('mean_ms'))} ± {fmt.ms(r.get('std_ms'))}</td>"
        f"<td>{fmt.ms(r.get('min_ms'))}</td><td>{fmt.ms(r.get('throughput_ips'))}</td>"
        f"<td>{e(r.get('iters', DASH))}</td></tr>"
        for batch, r in latency.items())
    return ('<table class="data compact"><thead><tr><th>batch</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th>'
            '<th>mean ± std ms</th><th>min ms</th><th>images/s</th><th>iterations</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _op_coverage(stages: dict, precision: str | None) -> str:
    int8, floating = measured(stages.get("int8_ops")), measured(stages.get("float_ops"))
    parts = []
    if precision == "int8" or int8:  # an op count of a float model says nothing
        int8, floating = int8 or 0, floating or 0
        share = int8 / (int8 + floating) if int8 + floating else 0.0
        parts.append(f'<div class="coverage"><div class="coverage-bar"><i style="width:{share * 100:.1f}%"></i></div>'
                     f"<span><b>{int8:.0f}</b> INT8 ops · <b>{floating:.0f}</b> float ops "
                     f"({share * 100:.0f}% INT8)</span></div>")
    if stages.get("fallback_warning"):
        parts.append(f'<div class="callout warn"><b>Float fallback.</b> {e(stages["fallback_warning"])}</div>')
    return "".join(parts)


def _top_ops(stages: dict) -> str:
    ops = stages.get("top_ops") or []
    if not ops:
        return ""
    total = measured(stages.get("total_ms"))
    share = lambda op: fmt.percent(measured(op.get("ms")) / total) if total and measured(op.get("ms")) else DASH
    rows = "".join(
        f"<tr><td class=\"mono\">{e(op.get('name'))}</td><td>{e(op.get('op'))}</td><td>{e(op.get('stage'))}</td>"
        f"<td>{fmt.ms(op.get('ms'))}</td><td>{share(op)}</td>"
        f"<td>{precision_badge(op.get('precision')) if op.get('precision') else DASH}</td></tr>"
        for op in ops)
    return ('<h4>Slowest operators</h4><div class="scroll"><table class="data compact ops"><thead><tr><th>node</th>'
            '<th>op</th><th>stage</th><th>ms</th><th>share</th><th>precision</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")


def _stages(variant: dict, scale_ms: float) -> str:
    stages = variant.get("stages")
    if not stages:
        return ""
    return ("<h4>Where the time goes</h4>" + stage_bars([(variant.get("name", ""), stages)], scale_ms, labels=False)
            + _op_coverage(stages, variant.get("precision")) + _top_ops(stages))


def _links(variant: dict, out_dir: Path | None) -> str:
    files = variant.get("profile_files") or {}
    if not files:
        return ""
    items = []
    for label, path in files.items():
        href = fmt.local_href(path, out_dir)
        target = f'<a href="{e(href)}">{e(path)}</a>' if href else f'<span class="mono">{e(path)}</span>'
        items.append(f"<li><b>{e(label)}</b>: {target}</li>")
    return f'<h4>Profiles</h4><ul class="links">{"".join(items)}</ul>'


def _notes(variant: dict) -> str:
    notes = [n for n in variant.get("notes") or [] if n]
    return f'<h4>Notes</h4><ul class="notes">{"".join(f"<li>{e(n)}</li>" for n in notes)}</ul>' if notes else ""


def variant_section(index: int, variant: dict, *, baseline_name: str | None, stage_scale_ms: float,
                    out_dir: Path | None) -> str:
    """The HTML <section> of one variant, successful or failed."""
    name = variant.get("name", f"variant {index}")
    ok = is_ok(variant)
    tags = precision_badge(variant.get("precision")) + f' <span class="badge engine">{e(variant.get("engine"))}</span>'
    if name == baseline_name:
        tags += ' <span class="badge baseline">baseline</span>'
    if not ok:
        tags += ' <span class="badge failed">failed</span>'
    body = [_steps(variant)]
    if not ok:
        body.append(f'<div class="callout error"><b>This variant failed.</b> '
                    f'<span class="mono">{e(variant.get("error") or "no reason recorded")}</span></div>')
    if ok or variant.get("accuracy") or variant.get("latency"):
        body += [_facts(variant), "<h4>Latency</h4>", _latency_table(variant), _stages(variant, stage_scale_ms)]
    body += [_links(variant, out_dir), _notes(variant),
             f'<details><summary>Variant spec</summary><pre>{fmt.pretty_json(variant.get("spec"))}</pre></details>']
    finished = variant.get("finished_at")
    finished = f'<span class="muted small">finished {e(finished)}</span>' if finished else ""
    return (f'<section class="card variant{"" if ok else " is-failed"}" id="{anchor(index)}">'
            f'<header class="variant-head"><h3>{e(name)}</h3><div class="tags">{tags}</div>{finished}</header>'
            f'{"".join(body)}</section>')

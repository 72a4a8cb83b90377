"""The experiment report: one self-contained, offline HTML page (inline CSS, hand-written JS, inline SVG).

`write_report(results, out_dir)` renders the results dict the runner writes as results.json. Every
string from the results is escaped: variant names and error texts are user input.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from optim.machine_load import BUSY_WARNING
from optim.report import fmt
from optim.report.fmt import DASH, e
from optim.report.serving_html import serving_section
from optim.report.summary import (
    compare_batch,
    delta_points,
    find_baseline,
    is_ok,
    latency_by_batch,
    map_of,
    measured,
    p50,
    pareto_frontier,
    speedup,
)
from optim.report.svg import latency_boxplots, stage_bars, stage_legend
from optim.report.variant_html import anchor, precision_badge, variant_section

ENGINE_COLORS = {
    "pytorch": "#e15759", "torch_compile": "#f28e2b", "onnxruntime": "#4e79a7", "openvino": "#b07aa1",
    "tensorrt": "#59a14f", "torch_tensorrt": "#8cd17d",
}
OTHER_COLOR = "#9c755f"
CLOSE_POINTS = 1.0  # "within 1 mAP point of the baseline" for the headline card


def _asset(name: str) -> str:
    return resources.files("optim.report").joinpath(name).read_text(encoding="utf-8")


def _largest_batch_throughput(variant: dict) -> tuple[int, float | None] | None:
    latency = latency_by_batch(variant)
    if not latency:
        return None
    batch = max(latency)
    return batch, measured(latency[batch].get("throughput_ips"))


def _header(results: dict, out_dir: Path | None) -> str:
    model = results.get("model") or {}
    env = results.get("environment") or {}
    size = model.get("input_size")
    size_text = f"{size[0]}×{size[1]}" if isinstance(size, (list, tuple)) and len(size) == 2 else DASH
    software = " · ".join(f"{label} {e(env[key])}" for key, label in
                          (("torch", "torch"), ("onnxruntime", "ONNX Runtime"), ("openvino", "OpenVINO"),
                           ("python", "Python")) if env.get(key))
    cores = f" · {e(env['cores'])} cores" if env.get("cores") else ""
    machine = f"{e(env.get('cpu') or env.get('machine') or 'unknown CPU')}{cores}"
    gpu = e(env.get("gpu")) if env.get("gpu") else "no GPU"
    files = [name for name in ("results.json", "results.csv") if out_dir is not None and (out_dir / name).is_file()]
    downloads = " · ".join(f'<a href="{name}">{name}</a>' for name in files)
    banner = ""
    if model.get("trained") is False:
        banner = ('<div class="banner danger" role="alert"><b>Untrained model: random weights — accuracy not '
                  'meaningful.</b> mAP, deltas and fidelity below compare noise. Latency, size and the stage '
                  'breakdown are still valid.</div>')
    return f"""
<header class="hero">
  <div class="wrap">
    <div class="eyebrow">DETR optimization report</div>
    <h1>{e(results.get("experiment", "experiment"))}</h1>
    {f'<p class="description">{e(results["description"])}</p>' if results.get("description") else ""}
    <dl class="meta">
      <div><dt>Model</dt><dd>{e(model.get("name", DASH))} <span class="muted">({e(model.get("source", ""))})</span>
        · input {size_text}</dd></div>
      <div><dt>Baseline</dt><dd>{e(results.get("baseline", DASH))}</dd></div>
      <div><dt>Machine</dt><dd>{machine} · {gpu}</dd></div>
      <div><dt>Software</dt><dd>{software or DASH}</dd></div>
      <div><dt>Generated</dt><dd>{e(results.get("generated_at", DASH))}{" · " + downloads if downloads else ""}
        </dd></div>
    </dl>
  </div>
</header>
<div class="wrap">{banner}</div>"""


def _nav() -> str:
    links = [("summary", "Summary"), ("tradeoff", "Accuracy vs latency"), ("distributions", "Latency"),
             ("stages", "Stages"), ("variants", "Variants"), ("method", "Method & environment")]
    return '<nav class="topnav"><div class="wrap">' + "".join(
        f'<a href="#{key}">{label}</a>' for key, label in links) + "</div></nav>"


def _kpis(results: dict, baseline: dict | None, batch: int | None) -> str:
    variants = results.get("variants", [])
    ok = [v for v in variants if is_ok(v)]
    failed = len(variants) - len(ok)
    cards = []
    if baseline is not None:
        cards.append(("Baseline", e(baseline.get("name")),
                      f"mAP {fmt.ap(map_of(baseline))} · p50 {fmt.ms(p50(baseline, batch))} ms"))
    # only variants faster than the baseline are headline material
    faster = [v for v in ok if v is not baseline and (speedup(v, baseline, batch) or 0) > 1.0]
    if baseline is not None and not faster:
        cards.append(("Fastest", e(baseline.get("name")), "no variant beats the baseline's p50"))
    if faster:
        fastest = max(faster, key=lambda v: speedup(v, baseline, batch))
        cards.append(("Fastest", e(fastest.get("name")),
                      (f"{fmt.times(speedup(fastest, baseline, batch))} speedup · "
                       f"{fmt.signed_points(delta_points(fastest, baseline))} mAP pts")))
        # "within 1 point" needs a trained model: with random weights every mAP is noise
        close = [v for v in faster if (d := delta_points(v, baseline)) is not None and d >= -CLOSE_POINTS
                 and (results.get("model") or {}).get("trained") is not False]
        best = max(close, key=lambda v: speedup(v, baseline, batch)) if close else None
        if best is fastest:
            cards[-1] = (f"Fastest, within {CLOSE_POINTS:g} mAP pt", *cards[-1][1:])
        elif best is not None:
            cards.append((f"Fastest within {CLOSE_POINTS:g} mAP pt", e(best.get("name")),
                          (f"{fmt.times(speedup(best, baseline, batch))} speedup · "
                           f"{fmt.signed_points(delta_points(best, baseline))} mAP pts")))
    cards.append(("Variants", f"{len(ok)} measured", f"{failed} failed" if failed else "none failed"))
    return '<div class="kpis">' + "".join(
        f'<div class="kpi{" kpi-bad" if label == "Variants" and failed else ""}"><span>{label}</span>'
        f"<b>{value}</b><small>{detail}</small></div>" for label, value, detail in cards) + "</div>"


def _cell(value: float | None, text: str, css: str = "") -> str:
    sort = "" if value is None else f"{value:.6g}"
    return f'<td class="num {css}" data-v="{sort}">{text}</td>'


def _summary_row(index: int, variant: dict, baseline: dict | None, baseline_name: str | None,
                 batch: int | None, frontier: set[str]) -> str:
    name = variant.get("name", "")
    marks = ' <span class="badge baseline">baseline</span>' if name == baseline_name else ""
    if name in frontier:
        marks += ' <span class="badge pareto" title="on the Pareto frontier">Pareto</span>'
    head = (f'<td class="name" data-v="{e(name)}"><a href="#{anchor(index)}">{e(name)}</a>{marks}</td>'
            f'<td data-v="{e(variant.get("engine"))}">{e(variant.get("engine"))}</td>'
            f'<td data-v="{e(variant.get("precision"))}">{precision_badge(variant.get("precision"))}</td>')
    if not is_ok(variant):
        return (f'<tr class="failed" data-failed="1">{head}<td colspan="11" class="error-cell">'
                f'<b>failed:</b> {e(variant.get("error") or "no reason recorded")}</td></tr>')
    accuracy = variant.get("accuracy") or {}
    delta = delta_points(variant, baseline)
    ratio = speedup(variant, baseline, batch)
    latency = latency_by_batch(variant).get(batch, {}) if batch is not None else {}
    p99 = measured(latency.get("p99_ms"))
    largest = _largest_batch_throughput(variant)
    throughput = largest[1] if largest else None
    thr_text = f'{fmt.ms(throughput)} <small class="muted">bs {largest[0]}</small>' if largest else DASH
    size = measured(variant.get("model_size_bytes"))
    speed_css = "" if ratio is None else "gain" if ratio >= 1.05 else "loss" if ratio < 0.95 else "flat"
    return (f'<tr data-point="{e(name)}">{head}'
            + _cell(map_of(variant), fmt.ap(accuracy.get("map")), "strong")
            + _cell(delta, fmt.signed_points(delta), "delta " + fmt.delta_class(delta))
            + _cell(map_of(variant, "map_50"), fmt.ap(accuracy.get("map_50")))
            + _cell(map_of(variant, "fidelity"), fmt.percent(accuracy.get("fidelity")))
            + _cell(p50(variant, batch), fmt.ms(p50(variant, batch)), "strong")
            + _cell(p99, fmt.ms(p99))
            + _cell(ratio, fmt.times(ratio), "speed " + speed_css)
            + _cell(throughput, thr_text)
            + _cell(size, fmt.megabytes(size))
            + _cell(measured(variant.get("params")), fmt.count(variant.get("params")))
            + _cell(measured(variant.get("build_seconds")), fmt.seconds(variant.get("build_seconds")))
            + "</tr>")


def _summary(results: dict, baseline: dict | None, batch: int | None, frontier: list[str]) -> str:
    baseline_name = results.get("baseline")
    variants = results.get("variants", [])
    rows = [_summary_row(i, v, baseline, baseline_name, batch, set(frontier)) for i, v in enumerate(variants)]
    rows.sort(key=lambda row: 'data-failed="1"' in row)  # failed variants last; order otherwise as run
    bs = f", bs {batch}" if batch is not None else ""
    columns = [("Variant", "text"), ("Engine", "text"), ("Precision", "text"),
               ("mAP<br><small>@[.5:.95]</small>", "num"), ("Δ mAP<br><small>pts vs baseline</small>", "num"),
               ("mAP<br><small>@.5</small>", "num"), ("Fidelity", "num"),
               (f"p50<br><small>ms{bs}</small>", "num"), (f"p99<br><small>ms{bs}</small>", "num"),
               ("Speedup<br><small>vs baseline p50</small>", "num"),
               ("Throughput<br><small>img/s, largest bs</small>", "num"),
               ("Size<br><small>MB on disk</small>", "num"), ("Params", "num"), ("Build", "num")]
    head = "".join(f'<th data-sort="{kind}" class="{"num" if kind == "num" else ""}" tabindex="0">{label}</th>'
                   for label, kind in columns)
    note = "" if baseline is not None else ('<p class="callout warn">The baseline did not run successfully, so '
                                            "deltas and speedups cannot be computed.</p>")
    return f"""
<section class="card" id="summary">
  <h2>Summary</h2>
  {_kpis(results, baseline, batch)}
  {note}
  <div class="scroll"><table class="data sortable" id="summary-table">
    <thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>
  </table></div>
  <p class="hint">Click a column header to sort. mAP in COCO points (0–100); Δ is in points, green = better than
  the baseline, red = worse. Speedup = baseline p50 / variant p50 at the same batch size.</p>
</section>"""


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
            "map50": (m * 100 if (m := map_of(variant, "map_50")) is not None else None),
            "delta": delta_points(variant, baseline), "speedup": speedup(variant, baseline, batch),
            "size_mb": (s / 1e6 if (s := measured(variant.get("model_size_bytes"))) is not None else None),
            "baseline": variant.get("name") == results.get("baseline"),
        })
    frontier = pareto_frontier((p["name"], p["p50"], p["map"]) for p in points)
    for point in points:
        point["pareto"] = point["name"] in frontier
    return {"batch": batch, "points": points, "frontier": frontier}, frontier


def _tradeoff(data: dict) -> str:
    engines = sorted({p["engine"]: p["color"] for p in data["points"]}.items())
    legend = "".join(f'<span class="legend-item"><i class="dot" style="background:{c}"></i>{e(name)}</span>'
                     for name, c in engines)
    legend += ('<span class="legend-item"><i class="line"></i>Pareto frontier</span>'
               '<span class="legend-item"><i class="ring"></i>baseline</span>')
    frontier = " → ".join(e(name) for name in data["frontier"]) or DASH
    if not data["points"]:
        return ('<section class="card" id="tradeoff"><h2>Accuracy vs latency</h2><p class="muted">No successful '
                "variant has both an mAP and a latency to plot.</p></section>")
    return f"""
<section class="card" id="tradeoff">
  <h2>Accuracy vs latency</h2>
  <p class="lede">Each point is a variant: median latency at batch {e(data["batch"])} (left is faster) against
  mAP@[.5:.95] (up is more accurate). The step line is the Pareto frontier — the variants no other variant beats
  on both. Hover a point for its figures, click it to jump to its section.</p>
  <div class="chart-wrap" id="scatter-wrap">
    <svg id="scatter" class="chart" viewBox="0 0 960 460" role="img" aria-label="mAP against p50 latency"></svg>
    <div id="tooltip" class="tooltip" hidden></div>
  </div>
  <div class="legend">{legend}</div>
  <p class="frontier-list"><b>Frontier, fastest first:</b> {frontier}</p>
  <script type="application/json" id="report-data">{fmt.script_json(data)}</script>
</section>"""


def _distributions(results: dict, batch: int | None) -> str:
    if batch is None:
        return ('<section class="card" id="distributions"><h2>Latency distributions</h2>'
                '<p class="muted">No latency was measured.</p></section>')
    series = [(v.get("name", ""), latency_by_batch(v)[batch]) for v in results.get("variants", [])
              if is_ok(v) and batch in latency_by_batch(v)]
    chart = latency_boxplots(series, batch) if series else '<p class="muted">No latency was measured.</p>'
    return f"""
<section class="card" id="distributions">
  <h2>Latency distributions</h2>
  <p class="lede">Every timed iteration at batch {e(batch)}: box = middle 50%, dark bar = median, whiskers = min to
  p99, dots = individual runs. A wide box or a long whisker means jitter, not just a slow variant.</p>
  {chart}
</section>"""


def _stage_overview(results: dict) -> tuple[str, float]:
    series = [(v.get("name", ""), v["stages"]) for v in results.get("variants", []) if v.get("stages")]
    totals = [sum(x for x in ((s.get("stages_ms") or {}).values()) if measured(x)) for _, s in series]
    scale = max(totals, default=0.0)
    if not series:
        return (('<section class="card" id="stages"><h2>Where the time goes</h2><p class="muted">No stage '
                 "breakdown was recorded (profile.stages: false, or the engine cannot attribute time).</p></section>"),
                scale)
    return f"""
<section class="card" id="stages">
  <h2>Where the time goes</h2>
  <p class="lede">Per-image time by DETR stage from the profiler (one batch of 1), on a shared scale. "20.8 of 21.4 ms"
  right of a bar: the stages add up to 20.8 ms of the profiled run's 21.4 ms end to end.</p>
  {stage_legend()}
  {stage_bars(series, scale)}
</section>""", scale


def _variants(results: dict, scale: float, out_dir: Path | None) -> str:
    sections = "".join(variant_section(i, v, baseline_name=results.get("baseline"), stage_scale_ms=scale,
                                       out_dir=out_dir) for i, v in enumerate(results.get("variants", [])))
    legend = stage_legend() if any(v.get("stages") for v in results.get("variants", [])) else ""
    return f'<div id="variants"><h2 class="section-title">Variants</h2>{legend}{sections}</div>'


def _paragraphs(text: object) -> str:
    blocks = [b.strip() for b in str(text or "").split("\n\n") if b.strip()]
    return "".join(f"<p>{e(b)}</p>" for b in blocks) or f'<p class="muted">{DASH}</p>'


def _machine_during_timing(results: dict) -> str:
    """What the machine was doing while the latency figures were timed (background CPU, speed probe)."""
    figures = [(v.get("name", ""), batch, record) for v in results.get("variants", []) if is_ok(v)
               for batch, record in latency_by_batch(v).items()]
    loads = [(load, name, batch) for name, batch, record in figures
             if (load := measured(record.get("background_cpu"))) is not None]
    probes = [probe for _, _, record in figures if (probe := measured(record.get("probe_ms")))]
    if not loads:
        return ""
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
        return (f'<p class="callout warn"><b>Timed while the machine was slow.</b> {e(text)} These figures had no '
                f'steady-state chunk even after waiting, so they are slower than the variant is: '
                f'{e(", ".join(unsteady))}. Re-run them.</p>')
    if load > BUSY_WARNING:
        busy = sorted(f"{n} @bs{b}" for value, n, b in loads if value > BUSY_WARNING)
        return (f'<p class="callout warn"><b>Timed on a busy machine.</b> {e(text)} Figures timed above '
                f'{BUSY_WARNING:.0%}: {e(", ".join(busy))}; their latency says more about that load than about '
                "the variant. Re-run them on an idle machine.</p>")
    return f"<p>{e(text)}</p>"


def _method(results: dict) -> str:
    measurement = results.get("measurement") or {}
    env = results.get("environment") or {}
    env_rows = "".join(f"<tr><th>{e(k)}</th><td>{e(DASH if v is None else v)}</td></tr>" for k, v in env.items())
    model_rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in (results.get("model") or {}).items())
    return f"""
<section class="card" id="method">
  <h2>How this was measured</h2>
  <div class="two-col">
    <div><h4>Latency</h4>{_paragraphs(measurement.get("latency"))}{_machine_during_timing(results)}</div>
    <div><h4>Accuracy</h4>{_paragraphs(measurement.get("accuracy"))}</div>
  </div>
  <div class="two-col">
    <div><h4>Environment</h4><table class="data kv">{env_rows}</table></div>
    <div><h4>Model</h4><table class="data kv">{model_rows}</table></div>
  </div>
  <details><summary>Full experiment spec</summary><pre>{fmt.pretty_json(results.get("spec"))}</pre></details>
</section>"""


def render_report(results: dict, out_dir: Path | None = None) -> str:
    """The report page as an HTML string; `out_dir` (where it will live) makes file links relative."""
    out_dir = Path(out_dir) if out_dir is not None else None
    baseline = find_baseline(results)
    batch = compare_batch(results)
    data, frontier = _chart_data(results, baseline, batch)
    stages_html, scale = _stage_overview(results)
    title = f"{results.get('experiment', 'experiment')} — DETR optimization report"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{_asset("report.css")}</style>
</head>
<body>
{_nav()}
{_header(results, out_dir)}
<main class="wrap">
{_summary(results, baseline, batch, frontier)}
{_tradeoff(data)}
{_distributions(results, batch)}
{stages_html}
{_variants(results, scale, out_dir)}
{serving_section(results)}
{_method(results)}
</main>
<footer class="wrap muted small">Generated by detr-optim-lab · every figure comes from results.json in this folder.
</footer>
<script>{_asset("report.js")}</script>
</body>
</html>
"""


def write_report(results: dict, out_dir: Path) -> Path:
    """Write out_dir/index.html for `results` (the results.json dict) and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    path.write_text(render_report(results, out_dir), encoding="utf-8")
    return path

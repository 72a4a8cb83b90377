"""Static inline-SVG charts drawn in Python: latency box plots and stage breakdown bars.

They need no script, so they render in any viewer (and in print). Every string from the results is
escaped; sizes are in viewBox units and the SVG scales to its container's width.
"""

from __future__ import annotations

import math
from html import escape

from optim.report.summary import STAGES, measured

STAGE_COLORS = {
    "preprocess": "#9aa5b1", "backbone": "#4e79a7", "encoder": "#f28e2b", "decoder": "#59a14f",
    "heads": "#b07aa1", "postprocess": "#76b7b2", "other": "#cfd4da", "runtime": "#9aa3ad",
}
WIDTH = 960
LABEL_W = 200  # left column for variant names
STATS_W = 170  # right column for the figures
MAX_DOTS = 400  # samples drawn per variant; more only slows the page down


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values covering [low, high] (1-2-5 steps)."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def quantile(ordered: list[float], q: float) -> float:
    """Linear-interpolated quantile of an already sorted, non-empty list."""
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _fmt(value: float) -> str:
    return f"{value:.3g}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _short(name: str, limit: int = 26) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _axis(ticks: list[float], x_of, top: float, bottom: float, unit: str) -> list[str]:
    parts = []
    for tick in ticks:
        x = x_of(tick)
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}"/>')
        parts.append(f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{tick:g}</text>')
    if not unit:
        return parts
    middle = (x_of(ticks[0]) + x_of(ticks[-1])) / 2
    parts.append(f'<text class="axis-title" x="{middle:.1f}" y="{bottom + 36}" text-anchor="middle">{unit}</text>')
    return parts


def latency_boxplots(series: list[tuple[str, dict]], batch: int) -> str:
    """One box plot per (variant name, latency record) on a shared axis starting at 0 ms.

    Box = p25..p75 of samples_ms, bar = median, whiskers = min..p99, faint dots = the samples.
    Records without samples fall back to min / p50 / p90 / p99 from the summary.
    """
    rows = []
    for name, record in series:
        samples = sorted(v for v in (measured(s) for s in record.get("samples_ms") or []) if v is not None)
        if samples:
            stats = {"min": samples[0], "q1": quantile(samples, 0.25), "med": quantile(samples, 0.5),
                     "q3": quantile(samples, 0.75), "p99": quantile(samples, 0.99), "max": samples[-1]}
        else:
            med = measured(record.get("p50_ms"))
            if med is None:
                continue
            low = measured(record.get("min_ms")) or med
            high = measured(record.get("p99_ms")) or med
            stats = {"min": low, "q1": med, "med": med, "q3": measured(record.get("p90_ms")) or med,
                     "p99": high, "max": high}
        rows.append((name, stats, samples))
    if not rows:
        return '<p class="muted">No latency samples.</p>'

    # The axis ends a bit past the slowest p99, so one hiccup does not squash every box.
    limit = max(min(s["max"], s["p99"] * 1.25) for _, s, _ in rows)
    ticks = nice_ticks(0.0, limit, 7)
    plot_l, plot_r = LABEL_W, WIDTH - STATS_W
    x_of = lambda v: plot_l + (min(v, ticks[-1]) / ticks[-1]) * (plot_r - plot_l)
    row_h, top = 38, 8
    bottom = top + row_h * len(rows)
    parts = _axis(ticks, x_of, top, bottom, f"latency per batch of {batch} (ms)")
    for i, (name, s, samples) in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        step = max(1, len(samples) // MAX_DOTS)
        dots = "".join(
            f'<circle cx="{x_of(v):.1f}" cy="{cy + ((j * 0.618034) % 1 - 0.5) * 18:.1f}" r="1.6"/>'
            for j, v in enumerate(samples[::step]))
        clipped = sum(1 for v in samples if v > ticks[-1])
        title = escape(f"{name}: min {s['min']:.2f}, p25 {s['q1']:.2f}, median {s['med']:.2f}, "
                       f"p75 {s['q3']:.2f}, p99 {s['p99']:.2f}, max {s['max']:.2f} ms"
                       + (f"; {clipped} runs beyond the axis" if clipped else ""))
        parts.append(
            f'<g class="box-row"><title>{title}</title>'
            f'<text class="row-label" x="{plot_l - 12}" y="{cy + 4:.1f}" text-anchor="end">'
            f'{escape(_short(name))}</text>'
            f'<g class="dots">{dots}</g>'
            f'<line class="whisker" x1="{x_of(s["min"]):.1f}" x2="{x_of(s["p99"]):.1f}" y1="{cy}" y2="{cy}"/>'
            f'<line class="whisker" x1="{x_of(s["min"]):.1f}" x2="{x_of(s["min"]):.1f}" y1="{cy - 6}" y2="{cy + 6}"/>'
            f'<line class="whisker" x1="{x_of(s["p99"]):.1f}" x2="{x_of(s["p99"]):.1f}" y1="{cy - 6}" y2="{cy + 6}"/>'
            f'<rect class="box" x="{x_of(s["q1"]):.1f}" y="{cy - 10}" '
            f'width="{max(x_of(s["q3"]) - x_of(s["q1"]), 1.5):.1f}" height="20" rx="2"/>'
            f'<line class="median" x1="{x_of(s["med"]):.1f}" x2="{x_of(s["med"]):.1f}" y1="{cy - 10}" y2="{cy + 10}"/>'
            + (f'<text class="off-scale" x="{plot_r - 2}" y="{cy - 8:.1f}" text-anchor="end">+{clipped} ›</text>'
               if clipped else "")
            + f'<text class="row-stats" x="{plot_r + 14}" y="{cy + 4:.1f}">'
              f'p50 {_fmt(s["med"])} · p99 {_fmt(s["p99"])} ms</text></g>')
    height = bottom + 44
    return (f'<svg class="chart boxplot" viewBox="0 0 {WIDTH} {height}" role="img" '
            f'aria-label="Latency distribution per variant">{"".join(parts)}</svg>')


def stage_bars(series: list[tuple[str, dict]], scale_ms: float, *, labels: bool = True) -> str:
    """Stacked horizontal bars of ms per stage, one per (variant name, stages dict), on a shared scale;
    `labels=False` draws a single unlabelled bar for a variant's own section."""
    plot_l = LABEL_W if labels else 8
    plot_r = WIDTH - 110
    ticks = nice_ticks(0.0, max(scale_ms, 1e-6))
    x_of = lambda v: plot_l + v / ticks[-1] * (plot_r - plot_l)
    row_h, top = 34, 6
    bottom = top + row_h * len(series)
    parts = _axis(ticks, x_of, top, bottom, "milliseconds per image, by stage" if labels else "")
    for i, (name, stages) in enumerate(series):
        y = top + row_h * i + 6
        stages_ms = stages.get("stages_ms") or {}
        x = plot_l
        if labels:
            parts.append(f'<text class="row-label" x="{plot_l - 12}" y="{y + 15}" text-anchor="end">'
                         f'{escape(_short(name))}</text>')
        total = 0.0
        for stage in list(STAGES) + sorted(set(stages_ms) - set(STAGES)):
            ms = measured(stages_ms.get(stage))
            if not ms:
                continue
            total += ms
            width = x_of(ms) - plot_l
            color = STAGE_COLORS.get(stage, "#bab0ac")
            parts.append(f'<rect class="stage" x="{x:.1f}" y="{y}" width="{width:.1f}" height="22" fill="{color}">'
                         f'<title>{escape(f"{name} · {stage}: {ms:.2f} ms")}</title></rect>')
            if width > 46:
                parts.append(f'<text class="stage-label" x="{x + width / 2:.1f}" y="{y + 15}" '
                             f'text-anchor="middle">{_fmt(ms)}</text>')
            x += width
        end_to_end = measured(stages.get("end_to_end_ms"))
        figure = f"{_fmt(total)} of {_fmt(end_to_end)} ms" if end_to_end else f"{_fmt(total)} ms"
        parts.append(f'<text class="row-stats" x="{x + 8:.1f}" y="{y + 15}">{figure}</text>')
    height = bottom + (44 if labels else 24)
    return (f'<svg class="chart stagebars" viewBox="0 0 {WIDTH} {height}" role="img" '
            f'aria-label="Latency by stage">{"".join(parts)}</svg>')


def stage_legend() -> str:
    """The color key of the stage bars, as HTML."""
    items = "".join(f'<span class="legend-item"><i style="background:{color}"></i>{stage}</span>'
                    for stage, color in STAGE_COLORS.items())
    return f'<div class="legend">{items}</div>'

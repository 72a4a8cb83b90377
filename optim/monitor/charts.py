"""Inline SVG time series for the replay report: lines over frame number, shift windows shaded, alerts marked."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

WIDTH, HEIGHT = 900, 230
LEFT, RIGHT, TOP, BOTTOM = 60, 150, 12, 30
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


@dataclass
class Chart:
    title: str
    unit: str
    frames: int
    lines: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    band: list[tuple[float, float, float]] = field(default_factory=list)  # frame, low, high
    reference: tuple[str, float] | None = None  # a horizontal line: label, value


def _ticks(high: float, count: int = 5) -> list[float]:
    if high <= 0:
        return [0.0]
    raw = high / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(nice * magnitude for nice in (1, 2, 2.5, 5, 10) if nice * magnitude >= raw)
    return [round(i * step, 10) for i in range(math.ceil(high / step) + 1)]


def render(chart: Chart, shifts: list[dict], alerts: list[dict]) -> str:
    """One chart as an <svg> element."""
    values = [y for line in chart.lines.values() for _, y in line] + [h for _, _, h in chart.band]
    if chart.reference:
        values.append(chart.reference[1])
    ticks = _ticks(max(values, default=1.0) * 1.05)
    top_value = ticks[-1] or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(frame: float) -> float:
        return LEFT + plot_w * frame / max(chart.frames, 1)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - min(value, top_value) / top_value)

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(chart.title)}">']
    for shift in shifts:
        parts.append(f'<rect class="shift" x="{x(shift["start"]):.1f}" y="{TOP}" '
                     f'width="{x(shift["end"]) - x(shift["start"]):.1f}" height="{plot_h}"><title>'
                     f'{escape(shift["kind"])}: frames {shift["start"]}-{shift["end"]}</title></rect>')
        parts.append(f'<text class="shift-label" x="{x(shift["start"]) + 2:.1f}" y="{TOP + 10}">'
                     f'{escape(shift["kind"])}</text>')
    for tick in ticks:
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>'
                     f'<text class="tick" x="{LEFT - 4}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
    for tick in _ticks(chart.frames, 8)[:-1]:
        parts.append(f'<text class="tick" x="{x(tick):.1f}" y="{HEIGHT - 12}" text-anchor="middle">{tick:g}</text>')
    parts.append(f'<text class="tick" x="{LEFT}" y="{HEIGHT - 1}">frame</text>'
                 f'<text class="tick" x="4" y="{TOP + 8}">{escape(chart.unit)}</text>')
    if chart.band:
        upper = " ".join(f"{x(f):.1f},{y(h):.1f}" for f, _, h in chart.band)
        lower = " ".join(f"{x(f):.1f},{y(lo):.1f}" for f, lo, _ in reversed(chart.band))
        parts.append(f'<polygon class="band" points="{upper} {lower}"><title>95% CI</title></polygon>')
    if chart.reference:
        label, value = chart.reference
        parts.append(f'<line class="reference" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(value):.1f}" '
                     f'y2="{y(value):.1f}"/><text class="legend" x="{LEFT + plot_w + 6}" y="{y(value) + 4:.1f}">'
                     f'{escape(label)}</text>')
    for index, (name, points) in enumerate(chart.lines.items()):
        colour = COLOURS[index % len(COLOURS)]
        path = " ".join(f"{x(f):.1f},{y(v):.1f}" for f, v in points)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}">'
                     f'<title>{escape(name)}</title></polyline>')
        parts.append(f'<text class="legend" x="{LEFT + plot_w + 6}" y="{TOP + 12 + 13 * index}" style="fill: {colour}">'
                     f'{escape(name)}</text>')
    for alert in alerts:
        parts.append(f'<line class="alert" x1="{x(alert["frame"]):.1f}" x2="{x(alert["frame"]):.1f}" y1="{TOP}" '
                     f'y2="{TOP + plot_h}"><title>{escape(alert["kind"])} alert at frame {alert["frame"]}: '
                     f'{escape(alert["detail"])}</title></line>')
    parts.append("</svg>")
    return "".join(parts)

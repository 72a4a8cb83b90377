"""Inline-SVG charts of the parallel-inference section: the tuning curve (throughput against p99 request
latency, one point per setting) and the pipeline timeline (a few frames per stage, from the Chrome trace)."""

from __future__ import annotations

from html import escape

from optim.report.svg import nice_ticks

STAGE_COLORS = {"decode": "#4e79a7", "preprocess": "#9aa5b1", "batch": "#f28e2b", "inference": "#59a14f",
                "postprocess": "#b07aa1"}
PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7"]
WIDTH, HEIGHT, LEFT, BOTTOM = 720, 300, 60, 40


def tuning_curve(series: list[tuple[str, list[dict]]]) -> str:
    """Throughput (y) against p99 request latency (x), one dot per setting, one colour per variant."""
    points = [p for _, curve in series for p in curve]
    if not points:
        return ""
    xs = nice_ticks(0, max(p["p99_ms"] for p in points))
    ys = nice_ticks(0, max(p["throughput_fps"] for p in points))

    def x_of(v: float) -> float:
        return LEFT + (WIDTH - LEFT - 20) * v / xs[-1]

    def y_of(v: float) -> float:
        return HEIGHT - BOTTOM - (HEIGHT - BOTTOM - 30) * v / ys[-1]

    parts = [(f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
              'aria-label="throughput against p99 latency per parallel setting">')]
    for tick in xs:
        parts.append(f'<text x="{x_of(tick):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" '
                     f'font-size="11">{tick:g}</text>')
    for tick in ys:
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - 20}" y1="{y_of(tick):.1f}" y2="{y_of(tick):.1f}" '
                     f'stroke="#e3e6ea"/><text x="{LEFT - 6}" y="{y_of(tick) + 4:.1f}" text-anchor="end" '
                     f'font-size="11">{tick:g}</text>')
    parts.append(f'<text x="{(WIDTH + LEFT) / 2}" y="{HEIGHT - 6}" text-anchor="middle" font-size="12">p99 request '
                 'latency (ms)</text><text x="4" y="12" font-size="12">frames/s</text>')
    for index, (name, curve) in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        for p in curve:
            parts.append(f'<circle cx="{x_of(p["p99_ms"]):.1f}" cy="{y_of(p["throughput_fps"]):.1f}" r="5" '
                         f'fill="{colour}"><title>{escape(name)} {escape(p["label"])}: {p["throughput_fps"]:.0f} '
                         f'frames/s, p99 {p["p99_ms"]:.1f} ms</title></circle>')
        parts.append(f'<text x="{WIDTH - 24}" y="{24 + 16 * index}" text-anchor="end" font-size="12" '
                     f'fill="{colour}">● {escape(name)}</text>')
    return "".join(parts) + "</svg>"


def timeline(trace: dict) -> str:
    """One row per trace lane (decode per stream, then each stage), one bar per frame and stage."""
    events = [e for e in trace.get("traceEvents", []) if e["ph"] == "X"]
    if not events:
        return ""
    lanes = {e["tid"]: e["args"]["name"] for e in trace["traceEvents"] if e["ph"] == "M"}
    end = max(e["ts"] + e["dur"] for e in events)
    row, label_w = 18, 110
    height = row * len(lanes) + 30

    def x_of(us: float) -> float:
        return label_w + (WIDTH - label_w - 10) * us / end

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="pipeline timeline">']
    for tid, name in sorted(lanes.items()):
        parts.append(f'<text x="{label_w - 6}" y="{tid * row + 13}" text-anchor="end" font-size="11">'
                     f'{escape(name)}</text>')
    for e in events:
        parts.append(f'<rect x="{x_of(e["ts"]):.1f}" y="{e["tid"] * row + 2}" width="{max(x_of(e["dur"]) - label_w, 1):.1f}" '
                     f'height="{row - 4}" fill="{STAGE_COLORS.get(e["cat"], "#999")}" opacity="0.8"><title>'
                     f'{escape(e["name"])} {e["cat"]}: {e["dur"] / 1000:.2f} ms</title></rect>')
    parts.append(f'<text x="{label_w}" y="{height - 6}" font-size="11">0 ms</text><text x="{WIDTH - 10}" '
                 f'y="{height - 6}" text-anchor="end" font-size="11">{end / 1000:.1f} ms</text>')
    return "".join(parts) + "</svg>"

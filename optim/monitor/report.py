"""The replay's report page: one self-contained HTML file (inline CSS and SVG, Jinja2 with autoescape)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from markupsafe import Markup

from optim.monitor.charts import Chart, render
from optim.monitor.extras import jinja2
from optim.monitor.replay import ReplayLog

TEMPLATE = Path(__file__).with_name("report.html")


def charts(log: ReplayLog) -> list[tuple[str, str]]:
    """(title, svg) per chart: latency, drift scores (-log10 p, the alert line), rolling mAP with its CI."""
    frames = log.config["frames"]
    latency = Chart("Latency (rolling window)", "ms", frames, {
        "p50": [(p["frame"], p["p50_ms"]) for p in log.latency],
        "p99": [(p["frame"], p["p99_ms"]) for p in log.latency],
        "canary p50": [(p["frame"], p["canary_p50_ms"]) for p in log.latency]})
    drift_alpha = log.config["drift"]["alpha"]
    statistics = list(log.drift[0]["pvalues"]) if log.drift else []
    threshold = _score(drift_alpha / max(len(statistics), 1))
    drift = Chart("Drift score per statistic: -log10 p", "-log10 p", frames,
                  {s: [(c["frame"], min(_score(c["pvalues"][s]), 3 * threshold)) for c in log.drift]
                   for s in statistics}, reference=(f"alert: p < {drift_alpha:g}/{len(statistics)}", threshold))
    accuracy = Chart("Rolling mAP@[.5:.95] (labelled frames) with its 95% bootstrap CI", "mAP", frames,
                     {"rolling mAP": [(p["frame"], p["map"]) for p in log.accuracy]},
                     band=[(p["frame"], p["low"], p["high"]) for p in log.accuracy],
                     reference=(f"measured {log.measured_map:.3f}", log.measured_map))
    return [(chart.title, Markup(render(chart, log.schedule, log.alerts))) for chart in (latency, drift, accuracy)]


def _score(p: float) -> float:
    import math

    return -math.log10(max(p, 1e-300))


def write_report(log: ReplayLog, out_dir: Path) -> Path:
    """Write replay.html and replay.json into `out_dir`; returns the HTML path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "replay.json").write_text(json.dumps(asdict(log), indent=1))
    j2 = jinja2()
    environment = j2.Environment(autoescape=True, undefined=j2.StrictUndefined)
    page = environment.from_string(TEMPLATE.read_text()).render(log=log, charts=charts(log))
    path = out_dir / "replay.html"
    path.write_text(page)
    return path

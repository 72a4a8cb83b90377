"""Server-side time split from Triton's Prometheus endpoint: queue vs compute per request, batch size formed.

Counters are cumulative, so a load level's figures are the difference of two snapshots; the summaries
(`summary_latencies=true`) give Triton's own quantiles over its recent window."""

from __future__ import annotations

import re
import urllib.request

LINE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
COUNTERS = {"requests": "nv_inference_request_success", "failures": "nv_inference_request_failure",
            "inferences": "nv_inference_count", "executions": "nv_inference_exec_count",
            "queue_us": "nv_inference_queue_duration_us", "input_us": "nv_inference_compute_input_duration_us",
            "infer_us": "nv_inference_compute_infer_duration_us",
            "output_us": "nv_inference_compute_output_duration_us", "request_us": "nv_inference_request_duration_us"}
SUMMARIES = {"queue": "nv_inference_queue_summary_us", "infer": "nv_inference_compute_infer_summary_us",
             "request": "nv_inference_request_summary_us"}


def scrape(url: str, model: str, timeout_s: float = 5.0) -> dict[str, float]:
    """{counter or '<summary>_p<q>': value} for `model` from the Prometheus text at `url`."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        text = response.read().decode()
    wanted = {v: k for k, v in COUNTERS.items()}
    summaries = {v: k for k, v in SUMMARIES.items()}
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = LINE.match(line)
        if not match or line.startswith("#"):
            continue
        labels = dict(LABEL.findall(match["labels"] or ""))
        if labels.get("model") != model:
            continue
        name, value = match["name"], float(match["value"])
        if name in wanted:
            values[wanted[name]] = values.get(wanted[name], 0.0) + value
        elif name in summaries and "quantile" in labels:
            values[f"{summaries[name]}_p{round(float(labels['quantile']) * 100)}"] = value
    return values


def server_split(before: dict[str, float], after: dict[str, float]) -> dict[str, float | None]:
    """Per successful request over the window: mean queue and compute (input, infer, output) time in ms, mean
    batch size formed (inferences / executions), plus Triton's latest quantiles."""
    delta = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in COUNTERS}
    requests = delta["requests"]

    def per_request(key: str) -> float | None:
        return round(delta[key] / requests / 1000.0, 4) if requests else None

    split = {"requests": requests, "failures": delta["failures"],
             "mean_batch": round(delta["inferences"] / delta["executions"], 3) if delta["executions"] else None,
             "queue_ms": per_request("queue_us"), "compute_input_ms": per_request("input_us"),
             "compute_infer_ms": per_request("infer_us"), "compute_output_ms": per_request("output_us"),
             "request_ms": per_request("request_us")}
    split.update({key: round(value / 1000.0, 4) for key, value in after.items() if "_p" in key})
    return split

"""The report's "Parallel inference" section as data: the best parallel setting per variant, then one part per
MLPerf scenario (throughput against latency per variant, streams sustained at the deadline, CPU utilisation per
stage, a timeline of a few frames). Rendered by templates/parallel.html."""

from __future__ import annotations

from markupsafe import Markup

from optim.report.fmt import DASH, ms, percent
from optim.report.parallel_svg import timeline, tuning_curve
from optim.report.summary import is_ok


def _setting(settings: dict | None) -> str:
    if not settings:
        return DASH
    return (f"{settings['threads']} threads, {settings['streams']} stream(s), batch {settings['batch']}, "
            f"{settings['inflight']} in flight")


def _rate(value: float | None) -> str:
    return DASH if value is None else f"{value:,.1f}"


def _faults(faults: dict | None) -> dict | None:
    if not faults:
        return None
    counted = ", ".join(f"{kind} {n}" for kind, n in sorted(faults["counted"].items())) or "none"
    return {"counted": counted, "healthy_streams_complete": faults["healthy_streams_complete"]}


def _variant(v: dict) -> dict:
    p = v["parallel"]
    row = {"name": v["name"], "error": p.get("error"), "best": _setting((p.get("tuning") or {}).get("best")),
           "offline": None, "singlestream": None, "multistream": None, "server": None}
    if "offline" in p:
        o = p["offline"]
        row["offline"] = {"throughput": _rate(o["throughput_sps"]), "sequential": _rate(o["sequential_fps"]),
                          "speedup": f"{o['speedup']:.2f}x", "met": o["speedup"] >= 1.5, "valid": o["loadgen_valid"],
                          "single": _rate(o.get("single_request_fps")),
                          "strict": DASH if not o.get("speedup_vs_single_request")
                          else f"{o['speedup_vs_single_request']:.2f}x",
                          "strict_met": (o.get("speedup_vs_single_request") or 0) >= 1.5,
                          "setting": _setting(o["settings"])}
    if "singlestream" in p:
        s = p["singlestream"]
        row["singlestream"] = {"p50": ms(s["p50_ms"]), "p99": ms(s["p99_ms"]), "valid": s["loadgen_valid"],
                               "throughput": _rate(s["throughput_sps"])}
    if "multistream" in p:
        m = p["multistream"]
        ratio = m.get("pipeline_vs_inference")
        row["multistream"] = {
            "fps": f"{m['fps']:g}", "deadline": ms(m["deadline_ms"]), "sustained": m["streams_sustained"],
            "trials": [{"streams": t["streams"], "on_time": percent(t["on_time"]), "p99": ms(t["p99_ms"])}
                       for t in m["trials"]],
            "pipeline": _rate(m["pipeline_fps"]), "alone": _rate(m["inference_alone_fps"]),
            "ratio": DASH if ratio is None else f"{ratio:.2f}x", "met": ratio is not None and ratio >= 0.9,
            "cpu": [(stage, percent(share)) for stage, share in m["cpu"].items()], "faults": _faults(m.get("faults")),
            "setting": _setting(m["settings"]), "loadgen_p99": ms(m["loadgen"]["p99_ms"]),
            "timeline": Markup(timeline(m.get("trace") or {})), "trace_file": m.get("trace_file"),
        }
    if "server" in p:
        s = p["server"]
        row["server"] = {"bound": ms(s["bound_ms"]), "highest": _rate(s["highest_rate"]),
                         "setting": _setting(s["settings"]),
                         "trials": [{"rate": _rate(t["target_rate"]), "achieved": _rate(t["throughput_sps"]),
                                     "p99": ms(t["p99_ms"]), "ok": t["p99_ms"] < s["bound_ms"]} for t in s["trials"]]}
    return row


def parallel_context(results: dict) -> dict | None:
    """The section's rows and charts; None when no variant was measured in scenarios."""
    variants = [v for v in results.get("variants", []) if is_ok(v) and v.get("parallel")]
    if not variants:
        return None
    rows = [_variant(v) for v in variants]
    curves = [(v["name"], v["parallel"]["tuning"]["curve"]) for v in variants if "tuning" in v["parallel"]]
    spec = (results.get("spec") or {}).get("scenarios") or {}
    return {"rows": rows, "curve": Markup(tuning_curve(curves)), "scenarios": spec.get("run", []),
            "seconds": spec.get("seconds")}

"""The report's "Latency cross-check" section as data: where each variant was timed, its engine's own
benchmark tool on the same artifact beside the lab's figure (over 15 % apart flagged), and the share of the
machine's matrix-product peak it reaches. Rendered by templates/agreement.html."""

from __future__ import annotations

from optim.report.fmt import DASH, ms, percent
from optim.report.summary import is_ok


def _reference(reference: dict | None) -> dict | None:
    if not reference:
        return None
    if "error" in reference:
        return {"error": reference["error"]}
    rounds = reference["rounds"]
    lab = sorted(r["lab_ms"] for r in rounds)[len(rounds) // 2]
    return {"tool": reference["tool"], "statistic": reference["statistic"], "rounds": len(rounds),
            "command": rounds[0]["command"], "lab": ms(lab), "tool_ms": ms(reference["reference_ms"]),
            "ratio": f"{reference['ratio']:.2f}", "agrees": reference["agrees"]}


def _peak(share: dict | None) -> dict | None:
    if not share:
        return None
    return {"share": percent(share["share"]),
            "title": f"{share['achieved_ops'] / 1e9:.1f} GOP/s of {share['peak_ops'] / 1e9:.0f} "
                     f"({share['peak_precision']} peak)"}


def agreement_context(results: dict) -> dict | None:
    """Rows and texts of the section; None when no variant has timing information (older results)."""
    variants = [v for v in results.get("variants", []) if is_ok(v) and v.get("timing")]
    if not variants:
        return None
    peaks = results.get("machine_peaks") or {}
    return {
        "rows": [{"name": v["name"], "timed": v["timing"]["timed"], "reference": _reference(v["timing"].get("reference")),
                  "peak": _peak(v.get("peak_share"))} for v in variants],
        "peaks": ", ".join(f"{name.upper()} {value / 1e9:,.0f} GOP/s" for name, value in peaks.items()) or DASH,
        "disagreeing": [v["name"] for v in variants if (v["timing"].get("reference") or {}).get("agrees") is False],
    }

"""results.csv: one row per variant and batch size, for spreadsheets and scripts."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from optim.atomic import write_text_atomic
from optim.report.summary import delta_points, find_baseline, is_ok, latency_by_batch, speedup

LATENCY_FIELDS = ["p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "iters", "throughput_ips"]
ACCURACY_FIELDS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large", "fidelity", "images"]
VARIANT_FIELDS = ["build_seconds", "first_inference_ms", "model_size_bytes", "peak_rss_mb", "rss_mb", "threads",
                  "params", "flops"]
INTERVAL_FIELDS = ["map_ci_low", "map_ci_high", "delta_map_ci_low", "delta_map_ci_high", "p50_ci_low_ms",
                   "p50_ci_high_ms", "speedup_ci_low", "speedup_ci_high"]
CHECK_FIELDS = ["timed_in", "reference_tool", "reference_ms", "lab_over_reference", "share_of_peak"]
FIELDS = (["experiment", "variant", "status", "error", "baseline", "engine", "precision", "batch_size"]
          + LATENCY_FIELDS + ["speedup_vs_baseline"] + ACCURACY_FIELDS + ["delta_map_points"] + VARIANT_FIELDS
          + CHECK_FIELDS + INTERVAL_FIELDS)


def _rows(results: dict) -> list[dict]:
    baseline = find_baseline(results)
    rows = []
    for variant in results.get("variants", []):
        accuracy = variant.get("accuracy") or {}
        common = {
            "experiment": results.get("experiment", ""),
            "variant": variant.get("name", ""),
            "status": variant.get("status", ""),
            "error": variant.get("error") or "",
            "baseline": variant.get("name") == results.get("baseline"),
            "engine": variant.get("engine", ""),
            "precision": variant.get("precision", ""),
            **{key: accuracy.get(key) for key in ACCURACY_FIELDS},
            "delta_map_points": _round(delta_points(variant, baseline)) if is_ok(variant) else None,
            **{key: variant.get(key) for key in VARIANT_FIELDS},
            **_cross_check(variant),
            **_pair("map_ci", (variant.get("intervals") or {}).get("map")),
            **_pair("delta_map_ci", _points((variant.get("intervals") or {}).get("map_delta"))),
        }
        latency = latency_by_batch(variant)
        if not latency:  # failed, or accuracy-only: still one row so every variant is listed
            rows.append(common)
        for batch, record in latency.items():
            rows.append({**common, "batch_size": batch, **{key: record.get(key) for key in LATENCY_FIELDS},
                         "speedup_vs_baseline": _round(speedup(variant, baseline, batch)),
                         **_pair("p50_ci", record.get("p50_ci_ms"), "_ms"),
                         **_pair("speedup_ci", ((variant.get("intervals") or {}).get("speedup") or {}).get(str(batch)))})
    return rows


def _cross_check(variant: dict) -> dict:
    """Where the variant was timed, its reference tool's batch-1 figure and ratio, and its share of peak."""
    timing = variant.get("timing") or {}
    reference = timing.get("reference") or {}
    return {"timed_in": timing.get("timed"), "reference_tool": reference.get("tool"),
            "reference_ms": _round(reference.get("reference_ms")), "lab_over_reference": reference.get("ratio"),
            "share_of_peak": (variant.get("peak_share") or {}).get("share")}


def _pair(prefix: str, pair: list | None, suffix: str = "") -> dict:
    """An interval as two columns, `<prefix>_low<suffix>` and `<prefix>_high<suffix>`."""
    low, high = pair if isinstance(pair, (list, tuple)) and len(pair) == 2 else (None, None)
    return {f"{prefix}_low{suffix}": low, f"{prefix}_high{suffix}": high}


def _points(pair: list | None) -> list | None:
    """An mAP interval (0..1) in points, like delta_map_points."""
    return [round(v * 100, 4) for v in pair] if isinstance(pair, (list, tuple)) and len(pair) == 2 else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def write_tables(results: dict, out_dir: Path) -> Path:
    """Write out_dir/results.csv (one row per variant and batch size; empty cells = not measured)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.csv"
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in _rows(results):
        writer.writerow({key: ("" if value is None else value) for key, value in row.items()})
    write_text_atomic(path, text.getvalue())
    return path

"""python -m optim.compare RUN_A RUN_B — flag latency and accuracy regressions of run B against run A.

A run is a report folder holding results.json, or the file itself. Variants are matched by name and
compared at every batch size both measured. Latency regresses when B's p50 exceeds A's by more than
max(latency_threshold x A's p50, 3 x the combined noise), the noise of each run being the robust sigma of
its timed samples (IQR / 1.349); accuracy regresses when mAP drops by more than map_threshold (absolute).
A variant that failed in B but ran in A is a regression too. Exit status: 0 none, 1 regression, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optim.cli import run_cli
from optim.errors import OptimError
from optim.report.summary import is_ok, latency_by_batch, measured

IQR_TO_SIGMA = 1.349  # the IQR of a normal distribution, in standard deviations
NOISE_SIGMAS = 3.0


@dataclass
class Row:
    """One compared figure of one variant, and the verdict on it."""

    variant: str
    metric: str  # "p50 ms @bs1", "mAP", "status"
    a: float | str | None
    b: float | str | None
    change: str
    verdict: str
    regression: bool = False


@dataclass
class Comparison:
    rows: list[Row] = field(default_factory=list)

    @property
    def regressions(self) -> list[Row]:
        return [row for row in self.rows if row.regression]


def load_results(path: Path) -> dict:
    """results.json of a run (folder or file), checked enough to compare; errors name the file."""
    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise OptimError("results file not found", path=file,
                         fix="give a report folder holding results.json (written by python -m optim.run), or the file")
    try:
        results = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise OptimError(f"not readable as JSON ({error})", path=file, fix="re-run the experiment to rewrite it")
    variants = results.get("variants") if isinstance(results, dict) else None
    if not isinstance(variants, list) or not all(isinstance(v, dict) and "name" in v for v in variants):
        raise OptimError("no 'variants' list of named records: not an optim results.json", path=file,
                         field="variants", fix="give the results.json written by python -m optim.run")
    return results


def robust_sigma(record: dict) -> float:
    """Noise of one latency record: IQR / 1.349 of its samples, else its standard deviation, else 0."""
    samples = [s for s in record.get("samples_ms") or [] if measured(s) is not None]
    if len(samples) >= 4:
        q1, q3 = np.percentile(samples, [25, 75])
        return float(q3 - q1) / IQR_TO_SIGMA
    return measured(record.get("std_ms")) or 0.0


def _latency_row(name: str, batch: int, a: dict, b: dict, threshold: float) -> Row | None:
    a_p50, b_p50 = measured(a.get("p50_ms")), measured(b.get("p50_ms"))
    if a_p50 is None or b_p50 is None:
        return None
    noise = math.hypot(robust_sigma(a), robust_sigma(b))
    limit = max(threshold * a_p50, NOISE_SIGMAS * noise)
    delta = b_p50 - a_p50
    change = f"{delta:+.3f} ms ({delta / a_p50:+.1%})" if a_p50 else f"{delta:+.3f} ms"
    if delta > limit:
        verdict, regression = f"REGRESSION (limit +{limit:.3f} ms)", True
    elif delta < -limit:
        verdict, regression = "faster", False
    else:
        verdict, regression = f"ok (within ±{limit:.3f} ms)", False
    return Row(name, f"p50 ms @bs{batch}", a_p50, b_p50, change, verdict, regression)


def _accuracy_row(name: str, a: dict, b: dict, threshold: float) -> Row | None:
    a_map, b_map = measured((a.get("accuracy") or {}).get("map")), measured((b.get("accuracy") or {}).get("map"))
    if a_map is None or b_map is None:
        return None
    delta = b_map - a_map
    if delta < -threshold:
        verdict, regression = f"REGRESSION (limit -{threshold:.4f})", True
    else:
        verdict, regression = "ok", False
    return Row(name, "mAP", a_map, b_map, f"{delta:+.4f}", verdict, regression)


def compare(run_a: dict, run_b: dict, latency_threshold: float = 0.1, map_threshold: float = 0.01) -> Comparison:
    """Every variant of A and B, matched by name: status, latency at each common batch size, mAP."""
    a_by_name = {v["name"]: v for v in run_a["variants"]}
    b_by_name = {v["name"]: v for v in run_b["variants"]}
    result = Comparison()
    for name in list(a_by_name) + [n for n in b_by_name if n not in a_by_name]:
        a, b = a_by_name.get(name), b_by_name.get(name)
        if b is None:
            result.rows.append(Row(name, "status", a.get("status"), None, "", "missing in B (not compared)"))
            continue
        if a is None:
            result.rows.append(Row(name, "status", None, b.get("status"), "", "new in B (not compared)"))
            continue
        if not is_ok(b):
            failed_in_b = is_ok(a)
            verdict = "REGRESSION: failed in B" if failed_in_b else "failed in both"
            result.rows.append(Row(name, "status", a.get("status"), b.get("status"), "",
                                   f"{verdict}: {b.get('error') or 'no reason recorded'}", failed_in_b))
            continue
        if not is_ok(a):
            result.rows.append(Row(name, "status", a.get("status"), "ok", "", "fixed in B (not compared)"))
            continue
        a_latency, b_latency = latency_by_batch(a), latency_by_batch(b)
        rows = [_latency_row(name, batch, a_latency[batch], b_latency[batch], latency_threshold)
                for batch in a_latency if batch in b_latency]
        rows.append(_accuracy_row(name, a, b, map_threshold))
        result.rows.extend(row for row in rows if row is not None)
    return result


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if value < 1 else f"{value:.3f}"
    return str(value)


def format_table(comparison: Comparison) -> str:
    """A plain-text table: variant, metric, A, B, change, verdict."""
    header = ("variant", "metric", "A", "B", "change", "verdict")
    lines = [header] + [(r.variant, r.metric, _cell(r.a), _cell(r.b), r.change, r.verdict) for r in comparison.rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1] for line in lines]
    text.insert(1, "-" * max(len(t) for t in text))
    return "\n".join(line.rstrip() for line in text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optim.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a", type=Path, help="reference run: report folder or results.json")
    parser.add_argument("run_b", type=Path, help="new run: report folder or results.json")
    parser.add_argument("--latency-threshold", type=float, default=0.1,
                        help="relative p50 increase tolerated beyond noise (default 0.1 = 10%%)")
    parser.add_argument("--map-threshold", type=float, default=0.01, help="absolute mAP drop tolerated (default 0.01)")
    args = parser.parse_args(argv)
    if args.latency_threshold < 0 or args.map_threshold < 0:
        parser.error("thresholds must be >= 0")
    comparison = compare(load_results(args.run_a), load_results(args.run_b), args.latency_threshold,
                         args.map_threshold)
    print(format_table(comparison))
    regressions = comparison.regressions
    if regressions:
        names = sorted({row.variant for row in regressions})
        print(f"\n{len(regressions)} regression(s) in {len(names)} variant(s): {', '.join(names)}")
        return 1
    print("\nno regression")
    return 0


if __name__ == "__main__":
    run_cli(main)

"""python -m optim.compare RUN_A [RUN_A2 ...] RUN_B — flag latency and accuracy regressions of run B.

A run is a report folder holding results.json, or the file itself. Every run but the last is a reference
run (give several to measure run-to-run spread); the last is the candidate. Variants are matched by name
and compared at every batch size measured in both. The reference latency is the median of the reference
runs' p50s. Latency regresses when B's p50 exceeds it by more than

    max(latency_threshold x reference, 3 x sqrt(sampling^2 + run_to_run^2))

where sampling is the standard error of the difference of two medians (1.2533 x robust sigma / sqrt(n),
robust sigma = IQR / 1.349 of the timed samples) and run_to_run is the standard deviation of the reference
runs' p50s (0 with one reference run). When the machine speed probe timed beside each latency figure
(optim.machine_load.speed_probe_ms) moved by more than 15 % against the reference runs', the verdict says
so (information: the figures themselves are already timed in the machine's steady state where it had one,
see optim.latency). Accuracy regresses when mAP drops by more than map_threshold
(absolute). A variant that failed in B but ran in the reference is a regression too. Latency measured
while other processes used more than 10 % of the CPU is marked, since that, not the code, is then the
likely cause. A figure of B over the limit that was timed with the machine slow throughout (no steady-state
chunk, see optim.latency) is inconclusive rather than a regression. With --every-batch-size, a variant's
latency regression counts only when all its batch sizes regressed. Exit status: 0 none, 1 regression,
2 bad input, 3 no regression but some figures inconclusive (re-run the new run).
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
from optim.machine_load import BUSY_WARNING, PROBE_TOLERANCE
from optim.report.summary import is_ok, latency_by_batch, measured

IQR_TO_SIGMA = 1.349  # the IQR of a normal distribution, in standard deviations
MEDIAN_SE = 1.2533  # standard error of a median = this x sigma / sqrt(n), for normal samples
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
    inconclusive: bool = False  # over the limit, but B was timed with the machine slow throughout


@dataclass
class Comparison:
    rows: list[Row] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)  # "variant @bsN: <run> timed with Y% background CPU"

    @property
    def regressions(self) -> list[Row]:
        return [row for row in self.rows if row.regression]

    @property
    def inconclusive(self) -> list[Row]:
        return [row for row in self.rows if row.inconclusive]


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


def median_standard_error(record: dict) -> float:
    """Standard error of a latency record's p50: 1.2533 x robust sigma / sqrt(samples)."""
    count = len(record.get("samples_ms") or []) or measured(record.get("iters")) or 1
    return MEDIAN_SE * robust_sigma(record) / math.sqrt(count)


def probe_ratio(references: list[dict], b: dict) -> float | None:
    """B's machine speed probe over the reference runs' median probe (>1: the machine was slower for B)."""
    probes = [p for p in (measured(a.get("probe_ms")) for a in references) if p]
    b_probe = measured(b.get("probe_ms"))
    return b_probe / float(np.median(probes)) if probes and b_probe else None


def _latency_row(name: str, batch: int, references: list[dict], b: dict, threshold: float) -> Row | None:
    reference_p50s = [p for p in (measured(a.get("p50_ms")) for a in references) if p is not None]
    b_p50 = measured(b.get("p50_ms"))
    if not reference_p50s or b_p50 is None:
        return None
    a_p50 = float(np.median(reference_p50s))
    sampling = math.hypot(float(np.median([median_standard_error(a) for a in references])), median_standard_error(b))
    run_to_run = float(np.std(reference_p50s, ddof=1)) if len(reference_p50s) > 1 else 0.0
    limit = max(threshold * a_p50, NOISE_SIGMAS * math.hypot(sampling, run_to_run))
    delta = b_p50 - a_p50
    change = f"{delta:+.3f} ms ({delta / a_p50:+.1%})" if a_p50 else f"{delta:+.3f} ms"
    ratio = probe_ratio(references, b)
    machine = f"; machine {ratio - 1:+.0%} (probe)" if ratio is not None and abs(ratio - 1) > PROBE_TOLERANCE else ""
    if delta > limit and b.get("steady") is False:
        slow = _slow_state(b)
        return Row(name, f"p50 ms @bs{batch}", a_p50, b_p50, change,
                   f"INCONCLUSIVE (limit +{limit:.3f} ms; B was timed with the machine slow throughout{slow}: re-run)",
                   inconclusive=True)
    if delta > limit:
        verdict, regression = f"REGRESSION (limit +{limit:.3f} ms{machine})", True
    elif delta < -limit:
        verdict, regression = f"faster{machine and f' ({machine[2:]})'}", False
    else:
        verdict, regression = f"ok (within ±{limit:.3f} ms{machine})", False
    return Row(name, f"p50 ms @bs{batch}", a_p50, b_p50, change, verdict, regression)


def _slow_state(record: dict) -> str:
    """", probe +N % over its fastest" for a latency record that has both probes, else ""."""
    probe, fastest = measured(record.get("probe_ms")), measured(record.get("probe_fastest_ms"))
    return f", probe {probe / fastest - 1:+.0%} over its fastest" if probe and fastest else ""


def _busy_notes(name: str, batch: int, records: list[tuple[str, dict]]) -> list[str]:
    """Which of these latency records were timed while other processes used > BUSY_WARNING of the CPU."""
    return [f"{name} @bs{batch}: {run} timed with {load:.0%} background CPU"
            for run, record in records if (load := measured(record.get("background_cpu"))) is not None
            and load > BUSY_WARNING]


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


def compare(references: list[dict], run_b: dict, latency_threshold: float = 0.1,
            map_threshold: float = 0.01, every_batch_size: bool = False) -> Comparison:
    """Every variant of the reference runs and B, matched by name: status, latency at each batch size measured
    in B and the first reference run, mAP (against the first reference run). With `every_batch_size`, a
    variant's latency regression counts only when every batch size it was timed at regressed."""
    a_by_name = {v["name"]: v for v in references[0]["variants"]}
    others = [{v["name"]: v for v in run["variants"]} for run in references[1:]]
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
        reference_latencies = [latency_by_batch(a)] + [latency_by_batch(o[name]) for o in others
                                                        if name in o and is_ok(o[name])]
        b_latency = latency_by_batch(b)
        rows = []
        for batch in (batch for batch in reference_latencies[0] if batch in b_latency):
            records = [latencies[batch] for latencies in reference_latencies if batch in latencies]
            rows.append(_latency_row(name, batch, records, b_latency[batch], latency_threshold))
            labelled = [(f"reference {i + 1}", record) for i, record in enumerate(records)] + [("B", b_latency[batch])]
            result.busy.extend(_busy_notes(name, batch, labelled))
        if every_batch_size:
            _require_every_batch_size([row for row in rows if row is not None])
        rows.append(_accuracy_row(name, a, b, map_threshold))
        result.rows.extend(row for row in rows if row is not None)
    return result


def _require_every_batch_size(latency_rows: list[Row]) -> None:
    """Un-flag a variant's latency regressions unless all its batch sizes regressed: a transient slowdown of
    the machine hits one timing window, a slower build or setting hits every batch size."""
    if any(row.regression for row in latency_rows) and not all(row.regression for row in latency_rows):
        for row in latency_rows:
            if row.regression:
                row.regression = False
                row.verdict += "; not at every batch size: not counted"


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


def main(argv: list[str] | None = None, prog: str = "python -m optim.compare") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN",
                        help="reference run(s) then the new run: report folders or results.json files")
    parser.add_argument("--latency-threshold", type=float, default=0.1,
                        help="relative p50 increase tolerated beyond noise (default 0.1 = 10%%)")
    parser.add_argument("--map-threshold", type=float, default=0.01, help="absolute mAP drop tolerated (default 0.01)")
    parser.add_argument("--every-batch-size", action="store_true",
                        help="count a variant's latency regression only when all its batch sizes regressed "
                             "(for noisy shared machines, whose slow moments hit one timing window)")
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        parser.error("give at least two runs: a reference run and the new run (last)")
    if args.latency_threshold < 0 or args.map_threshold < 0:
        parser.error("thresholds must be >= 0")
    references = [load_results(path) for path in args.runs[:-1]]
    comparison = compare(references, load_results(args.runs[-1]), args.latency_threshold, args.map_threshold,
                         args.every_batch_size)
    print(format_table(comparison))
    if comparison.busy:
        print(f"\nmeasured on a busy machine (other processes above {BUSY_WARNING:.0%} of the CPU; latency there says "
              "more about the machine than the code; re-run on an idle machine):")
        print("\n".join(f"  {note}" for note in comparison.busy))
    regressions = comparison.regressions
    if regressions:
        names = sorted({row.variant for row in regressions})
        print(f"\n{len(regressions)} regression(s) in {len(names)} variant(s): {', '.join(names)}")
        return 1
    if comparison.inconclusive:
        names = sorted({row.variant for row in comparison.inconclusive})
        print(f"\nno regression among the figures timed in the machine's steady state; {len(names)} variant(s) "
              f"inconclusive, timed with the machine slow throughout: {', '.join(names)} (re-run the new run)")
        return 3
    print("\nno regression")
    return 0


if __name__ == "__main__":
    run_cli(main)

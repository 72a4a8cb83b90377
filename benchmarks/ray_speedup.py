"""Ray on one machine against the sequential runner: the same accuracy-only sweep, wall time and mAP figures.

    python benchmarks/ray_speedup.py [--spec experiments/ray_sweep.yaml] [--workers 2] [--rounds 2]
                                     [--out reports/ray-speedup]

Each round runs `python -m optim.run SPEC --fresh` sequentially, then with `--ray --ray-workers N`, each into its
own folder (A B A B: both sides see the same drift of the machine); wall time is the whole command, imports and
Ray's start included. Prints every run's wall time, the speedup (median sequential / median Ray) and whether every
variant's mAP figures are identical in every run; writes the same as <out>/summary.json. Target (issue 23): 2
workers finish the 8-variant sweep at least 1.6x faster than sequentially, with identical mAP figures. Run it on
an otherwise idle machine: other work on the cores distorts both sides, unequally.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET = 1.6


def run_once(spec: Path, out: Path, workers: int | None) -> float:
    """Wall seconds of one fresh run of `spec` into `out` (with Ray when `workers` is given)."""
    command = [sys.executable, "-m", "optim.run", str(spec), "--fresh", "--out", str(out)]
    if workers:
        command += ["--ray", "--ray-workers", str(workers)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def accuracy_of(out: Path) -> dict[str, dict | None]:
    """Each variant's accuracy figures (mAP, mAP@.5, ..., fidelity), None for a failed one."""
    results = json.loads((out / "results.json").read_text())
    return {v["name"]: v.get("accuracy") if v["status"] == "ok" else None for v in results["variants"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=Path("experiments/ray_sweep.yaml"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("reports/ray-speedup"))
    args = parser.parse_args()

    from optim.data.synthetic import ensure_dataset
    from optim.spec import ExperimentSpec
    from optim.spec_loading import load_spec

    spec = load_spec(args.spec, ExperimentSpec, defaults={"name": args.spec.stem})
    if spec.data.dataset == "synthetic":  # generated once, before anything is timed
        ensure_dataset(spec.data.root, (spec.data.eval_split, spec.data.calibration_split))
    walls: dict[str, list[float]] = {"sequential": [], "ray": []}
    figures = []
    for index in range(1, args.rounds + 1):
        for mode, workers in (("sequential", None), ("ray", args.workers)):
            out = args.out / mode
            walls[mode].append(run_once(args.spec, out, workers))
            figures.append(accuracy_of(out))
            print(f"round {index} {mode:<10} {walls[mode][-1]:7.1f} s", flush=True)
    sequential, distributed = statistics.median(walls["sequential"]), statistics.median(walls["ray"])
    speedup = sequential / distributed
    identical = all(f == figures[0] for f in figures) and all(a is not None for a in figures[0].values())
    print(f"median: sequential {sequential:.1f} s, Ray ({args.workers} workers) {distributed:.1f} s -> speedup "
          f"{speedup:.2f}x (target >= {TARGET}x: {'met' if speedup >= TARGET else 'not met'}); "
          f"{len(figures[0])} variants, mAP figures identical in all {len(figures)} runs: {'yes' if identical else 'NO'}")
    summary = {"spec": str(args.spec), "workers": args.workers, "rounds": args.rounds, "wall_seconds": walls,
               "speedup": round(speedup, 3), "target": TARGET, "identical_map": identical,
               "variants": len(figures[0]), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

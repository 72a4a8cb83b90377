"""python -m optim.run SPEC.yaml — measure every variant of an experiment and write its report."""

from __future__ import annotations

import argparse
from pathlib import Path

from optim.cli import quiet_libraries, run_cli
from optim.errors import OptimError
from optim.preflight import check_experiment_paths
from optim.spec import ExperimentSpec
from optim.spec_loading import load_spec


def main(argv: list[str] | None = None, prog: str = "python -m optim.run") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("spec", type=Path, help="experiment spec (YAML)")
    parser.add_argument("--out", type=Path, help="output folder (default: <output_dir>/<name> from the spec)")
    parser.add_argument("--fresh", action="store_true", help="measure every variant again (default: resume)")
    parser.add_argument("--only", nargs="+", metavar="VARIANT", help="run only these variants (plus the baseline)")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec, ExperimentSpec, defaults={"name": args.spec.stem})
    check_experiment_paths(spec, args.spec)
    unknown = set(args.only or []) - {v.name for v in spec.all_variants()}
    if unknown:
        parser.error(f"--only names unknown variants {sorted(unknown)}")

    if spec.search and spec.search.sensitivity and not spec.search.sensitivity.is_file():
        raise OptimError("the search's sensitivity results do not exist", path=spec.search.sensitivity,
                         field="search.sensitivity", fix="run python -m optim.sensitivity SPEC first (it writes "
                         "<output_dir>/<name>-sensitivity/results.json), or remove the field")
    quiet_libraries()
    from optim.runner import run_experiment

    results = run_experiment(spec, args.out, resume=not args.fresh, only=args.only)
    failed = [v["name"] for v in results["variants"] if v["status"] != "ok"]
    if failed:
        print(f"{len(failed)} variant(s) failed: {', '.join(failed)} (reasons in the report)")
    return 1 if failed and len(failed) == len(results["variants"]) else 0


if __name__ == "__main__":
    run_cli(main)

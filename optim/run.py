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
    parser.add_argument("--ray", action="store_true", help="measure the variants as tasks of a local single-node "
                        "Ray cluster (the 'ray' extra; see docs/ray.md)")
    parser.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster instead (e.g. 10.0.0.1:6379)")
    parser.add_argument("--ray-workers", type=int, metavar="N", help="local Ray: CPUs given to Ray, i.e. variants "
                        "measured at once (default: every core)")
    args = parser.parse_args(argv)
    if args.ray_workers is not None and args.ray_address:
        parser.error("--ray-workers sizes a local Ray; a cluster's nodes bring their own CPUs (drop one of them)")
    if args.ray_workers is not None and args.ray_workers < 1:
        parser.error("--ray-workers must be at least 1")
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

    ray = None
    if args.ray or args.ray_address or args.ray_workers:
        from optim.distributed.cluster import RayOptions, import_ray

        import_ray()  # the 'ray' extra: fail before loading anything
        ray = RayOptions(address=args.ray_address, workers=args.ray_workers)
    results = run_experiment(spec, args.out, resume=not args.fresh, only=args.only, ray=ray)
    failed = [v["name"] for v in results["variants"] if v["status"] != "ok"]
    if failed:
        print(f"{len(failed)} variant(s) failed: {', '.join(failed)} (reasons in the report)")
    return 1 if failed and len(failed) == len(results["variants"]) else 0


if __name__ == "__main__":
    run_cli(main)

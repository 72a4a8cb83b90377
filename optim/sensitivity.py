"""python -m optim.sensitivity SPEC.yaml — per DETR block, what quantizing it costs in mAP and gains in latency.

For every quantized variant of the spec (an engine and a quantizer that can keep blocks in float), measure it with
one block quantized at a time (keep_float = every other block) beside the spec's baseline, that variant itself
(all blocks) and the same engine in float. The variants run as one experiment `<name>-sensitivity` (resumable,
same report, with a heat table); variants already measured in the spec's own run are reused, not re-timed.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from optim.cli import quiet_libraries, run_cli
from optim.errors import OptimError
from optim.report.sensitivity import BLOCKS
from optim.results import ResultStore, safe_child
from optim.spec import ExperimentSpec, QuantizeStep, VariantSpec
from optim.spec_loading import load_spec

KEEP_FLOAT_METHODS = {"torch_dynamic", "ort_static", "ort_dynamic", "nncf"}  # quantizers that honour keep_float


def one_block_variants(variant: VariantSpec) -> list[VariantSpec]:
    """`variant` with only one block quantized, per block, named `<variant>.only-<block>`."""
    step = variant.steps[-1]
    return [variant.model_copy(update={
        "name": f"{variant.name}.only-{block}",
        "steps": [*variant.steps[:-1], step.model_copy(update={"keep_float": [b for b in BLOCKS if b != block]})]})
        for block in BLOCKS]


def sensitivity_spec(spec: ExperimentSpec, only: list[str] | None = None) -> ExperimentSpec:
    """The experiment measuring every block of every chosen quantized variant (all of them by default)."""
    variants = spec.all_variants()
    quantized = [v for v in variants if v.steps and isinstance(v.steps[-1], QuantizeStep)
                 and v.steps[-1].method in KEEP_FLOAT_METHODS and not v.steps[-1].keep_float
                 and (not only or v.name in only)]
    if not quantized:
        raise OptimError("no variant to analyse: sensitivity needs a quantized variant (methods "
                         f"{sorted(KEEP_FLOAT_METHODS)}) without keep_float", field="variants",
                         fix="add one, or name one with --variants")
    engines = {v.engine.kind for v in quantized}
    floats = [v for v in variants if not v.steps and v.engine.kind in engines]
    chosen = {v.name: v for v in [next(v for v in variants if v.name == spec.baseline_name), *floats]}
    for variant in quantized:
        chosen[variant.name] = variant
        chosen.update({v.name: v for v in one_block_variants(variant)})
    return spec.model_copy(update={"name": f"{spec.name}-sensitivity", "baseline": spec.baseline_name,
                                   "variants": list(chosen.values()), "matrix": None})


def reuse_measured(source: Path, target: Path, names: list[str]) -> list[str]:
    """Copy finished records of `names` from a previous run's store into the sensitivity run's store (the
    runner re-measures any whose spec differs)."""
    copied = []
    for name in names:
        record = ResultStore(source).load(name)
        destination = ResultStore(target).path_of(name)
        if record and record.get("status") == "ok" and not destination.exists():
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ResultStore(source).path_of(name), destination)
            copied.append(name)
    return copied


def main(argv: list[str] | None = None, prog: str = "python -m optim.sensitivity") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", type=Path, help="experiment spec (YAML)")
    parser.add_argument("--variants", nargs="+", metavar="VARIANT", help="analyse only these quantized variants")
    parser.add_argument("--out", type=Path, help="output folder (default: <output_dir>/<name>-sensitivity)")
    parser.add_argument("--reuse", type=Path, help="the spec's own run folder to reuse measured variants from "
                                                   "(default: <output_dir>/<name>)")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec, ExperimentSpec, defaults={"name": args.spec.stem})
    derived = sensitivity_spec(spec, args.variants)
    out = args.out or safe_child(spec.output_dir, derived.name)
    reused = reuse_measured(args.reuse or safe_child(spec.output_dir, spec.name), out,
                            [v.name for v in derived.variants])
    if reused:
        print(f"reusing measured variants: {', '.join(reused)}")
    quiet_libraries()
    from optim.runner import run_experiment

    results = run_experiment(derived, out)
    failed = [v["name"] for v in results["variants"] if v["status"] != "ok"]
    if failed:
        print(f"{len(failed)} variant(s) failed: {', '.join(failed)} (reasons in the report)")
    return 0 if len(failed) < len(results["variants"]) else 1


if __name__ == "__main__":
    run_cli(main)

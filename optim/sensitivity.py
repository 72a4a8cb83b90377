"""python -m optim.sensitivity SPEC.yaml — per DETR unit or block, what quantizing it costs in mAP and gains in latency.

For every quantized variant of the spec (an engine and a quantizer that can keep blocks in float), measure it with
one unit quantized at a time (keep_float = every other unit; `--granularity layers`: the backbone's stem, stages
and projection, each encoder and decoder layer, each head; `--granularity blocks`: backbone, encoder, decoder,
heads) beside the spec's baseline, that variant itself (everything quantized) and the same engine in float. The
variants run as one experiment `<name>-sensitivity` (resumable, same report, with a heat table); variants already
measured in the spec's own run are reused, not re-timed.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from optim.cli import quiet_libraries, run_cli
from optim.errors import OptimError
from optim.models.blocks import BLOCKS, pruned_units
from optim.results import ResultStore, safe_child
from optim.spec import ExperimentSpec, QuantizeStep, VariantSpec
from optim.spec_loading import load_spec

KEEP_FLOAT_METHODS = {"torch_dynamic", "ort_static", "ort_dynamic", "nncf"}  # quantizers that honour keep_float


def model_units(spec: ExperimentSpec) -> list[str]:
    """The units (`optim.models.blocks`) of the spec's model, in data-flow order."""
    from optim.models.blocks import module_units, sorted_units
    from optim.models.zoo import load_model

    loaded = load_model(spec.model, trust_remote_code=spec.trust_remote_code,
                        allow_missing_weights=spec.allow_missing_weights)
    return sorted_units(module_units(loaded.model).values())


def one_unit_variants(variant: VariantSpec, units: list[str] | tuple[str, ...] = BLOCKS) -> list[VariantSpec]:
    """`variant` with only one unit (or block) quantized, per unit, named `<variant>.only-<unit>`: keep_float
    lists every other one."""
    step = variant.steps[-1]
    return [variant.model_copy(update={
        "name": f"{variant.name}.only-{unit}",
        "steps": [*variant.steps[:-1], step.model_copy(update={"keep_float": [u for u in units if u != unit]})]})
        for unit in units]


def sensitivity_spec(spec: ExperimentSpec, only: list[str] | None = None,
                     units: list[str] | None = None) -> ExperimentSpec:
    """The experiment measuring every block of every chosen quantized variant (all of them by default), or
    every one of `units` (the model's, see `model_units`) when given."""
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
        chosen.update({v.name: v for v in one_unit_variants(variant, pruned_units(units, variant.steps) if units
                                                             else BLOCKS)})
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
    parser.add_argument("--granularity", choices=["layers", "blocks"], default="layers",
                        help="quantize one unit at a time (backbone stem/stages/projection, each encoder and "
                             "decoder layer, each head; default) or one block (backbone, encoder, decoder, heads)")
    parser.add_argument("--out", type=Path, help="output folder (default: <output_dir>/<name>-sensitivity)")
    parser.add_argument("--reuse", type=Path, help="the spec's own run folder to reuse measured variants from "
                                                   "(default: <output_dir>/<name>)")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec, ExperimentSpec, defaults={"name": args.spec.stem})
    derived = sensitivity_spec(spec, args.variants, model_units(spec) if args.granularity == "layers" else None)
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

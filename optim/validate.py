"""python -m optim.validate PATH... — check experiment and fine-tuning specs (files or folders), and the models and
data they point at, without running anything heavy or writing anything."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optim.errors import OptimError
from optim.finetune.spec import FinetuneSpec
from optim.preflight import check_experiment_paths, check_finetune_paths
from optim.spec import ExperimentSpec
from optim.spec_loading import load_spec, read_yaml


def spec_files(paths: list[Path]) -> list[Path]:
    """YAML files named directly or found in the given folders."""
    files: list[Path] = []
    for path in paths:
        files += sorted(path.glob("*.y*ml")) if path.is_dir() else [path]
    return files


def validate_file(path: Path, check_paths: bool = True) -> str:
    """Validate one spec (a fine-tuning spec if it names a trainer) and, with `check_paths`, the models and data
    it points at; return a one-line summary."""
    data = read_yaml(path)
    if "trainer" in data:
        spec = load_spec(path, FinetuneSpec, defaults={"name": path.stem})
        if check_paths:
            check_finetune_paths(spec, path)
        return f"fine-tuning spec '{spec.name}' ({spec.trainer}, {spec.steps} steps)"
    spec = load_spec(path, ExperimentSpec, defaults={"name": path.stem})
    if check_paths:
        check_experiment_paths(spec, path)
    return f"experiment '{spec.name}': {len(spec.all_variants())} variants, baseline '{spec.baseline_name}'"


def main(argv: list[str] | None = None, prog: str = "python -m optim.validate") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--specs-only", action="store_true",
                        help="check the specs alone, not the models and data they point at (e.g. a model that "
                             "another spec's run will write)")
    args = parser.parse_args(argv)
    failures = 0
    for path in spec_files(args.paths):
        try:
            print(f"ok    {path}: {validate_file(path, check_paths=not args.specs_only)}")
        except OptimError as error:
            failures += 1
            print(f"error {error}", file=sys.stderr)
    return 2 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""python -m optim.validate PATH... — check experiment specs (files or folders) without running anything heavy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optim.errors import OptimError
from optim.finetune.spec import FinetuneSpec
from optim.spec import ExperimentSpec
from optim.spec_loading import load_spec, read_yaml


def spec_files(paths: list[Path]) -> list[Path]:
    """YAML files named directly or found in the given folders."""
    files: list[Path] = []
    for path in paths:
        files += sorted(path.glob("*.y*ml")) if path.is_dir() else [path]
    return files


def validate_file(path: Path) -> str:
    """Validate one spec (a fine-tuning spec if it names a trainer); return a one-line summary."""
    data = read_yaml(path)
    if "trainer" in data:
        spec = load_spec(path, FinetuneSpec, defaults={"name": path.stem})
        return f"fine-tuning spec '{spec.name}' ({spec.trainer}, {spec.steps} steps)"
    spec = load_spec(path, ExperimentSpec, defaults={"name": path.stem})
    return f"experiment '{spec.name}': {len(spec.all_variants())} variants, baseline '{spec.baseline_name}'"


def main(argv: list[str] | None = None, prog: str = "python -m optim.validate") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    failures = 0
    for path in spec_files(args.paths):
        try:
            print(f"ok    {path}: {validate_file(path)}")
        except OptimError as error:
            failures += 1
            print(f"error {error}", file=sys.stderr)
    return 2 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

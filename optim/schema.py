"""python -m optim.schema [--out schemas] [--check] — write the JSON Schemas of the experiment and fine-tuning specs.

Editors validate and complete a spec as it is typed when its first line names the schema:

    # yaml-language-server: $schema=../schemas/experiment.schema.json

The schemas come from the pydantic models (optim/spec.py, optim/finetune/spec.py), so they carry every field,
type, default, bound and description. Cross-field checks (a quantizer on the wrong engine, calibration split =
evaluation split, ...) are not expressible in a schema: `python -m optim.validate` runs them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import BaseModel

from optim.cli import run_cli
from optim.errors import OptimError
from optim.finetune.spec import FinetuneSpec
from optim.reference import FIELD_NOTES
from optim.spec import ExperimentSpec

DEFAULT_DIR = Path("schemas")
# file name -> the spec model it describes; an example spec's first line names its file
SCHEMAS: dict[str, type[BaseModel]] = {
    "experiment.schema.json": ExperimentSpec,
    "finetune.schema.json": FinetuneSpec,
}


def _describe(schema: dict) -> None:
    """Give every property without a description its FIELD_NOTES entry (what the manual's reference shows)."""
    for definition in [schema, *schema.get("$defs", {}).values()]:
        for name, prop in definition.get("properties", {}).items():
            note = FIELD_NOTES.get(f"{definition['title']}.{name}")
            if note and "description" not in prop:
                prop["description"] = note


def spec_schema(model: type[BaseModel]) -> dict:
    """The JSON Schema (draft 2020-12) of a spec model; `name` is optional (the loader defaults it to the file stem)."""
    schema = model.model_json_schema()
    _describe(schema)
    schema["required"] = [field for field in schema.get("required", []) if field != "name"]
    if not schema["required"]:
        del schema["required"]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def render(model: type[BaseModel]) -> str:
    """The schema file's exact text (stable key order, trailing newline), so a stale committed copy shows."""
    return json.dumps(spec_schema(model), indent=2) + "\n"


def write_schemas(out_dir: Path) -> list[Path]:
    """Write every schema into `out_dir`; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, model in SCHEMAS.items():
        path = out_dir / name
        path.write_text(render(model))
        paths.append(path)
    return paths


def stale_schemas(out_dir: Path) -> list[Path]:
    """Schema files in `out_dir` that are missing or differ from the models."""
    return [out_dir / name for name, model in SCHEMAS.items()
            if not (out_dir / name).is_file() or (out_dir / name).read_text() != render(model)]


def main(argv: list[str] | None = None, prog: str = "python -m optim.schema") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="folder to write into (default: schemas)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a schema there is out of date")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_schemas(args.out)
        for path in stale:
            print(f"out of date: {path}")
        return 1 if stale else 0
    if args.out.exists() and not args.out.is_dir():
        raise OptimError("not a folder", path=args.out, fix="give a folder for --out")
    for path in write_schemas(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)

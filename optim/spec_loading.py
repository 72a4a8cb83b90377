"""Load a YAML spec into a typed pydantic model; every error names the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from optim.errors import OptimError

SpecT = TypeVar("SpecT", bound=BaseModel)


def read_yaml(path: Path) -> dict:
    """`yaml.safe_load` of a mapping, with clear errors for a missing file or invalid YAML."""
    path = Path(path)
    if not path.is_file():
        raise OptimError("spec file not found", path=path, fix="check the path")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise OptimError(f"invalid YAML{where}: {getattr(error, 'problem', error)}", path=path,
                         fix="fix the YAML syntax (indentation, colons, quotes)") from error
    if not isinstance(data, dict):
        raise OptimError("a spec must be a YAML mapping (key: value)", path=path, fix="see the manual's spec reference (docs/spec.md)")
    return data


def format_validation_error(error: ValidationError, path: Path) -> str:
    """One line per problem: `file: field 'a.b': message`, plus a hint for unknown keys."""
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown key (typo?); remove it or see the manual's spec reference (docs/spec.md)"
        elif problem["type"] in ("literal_error", "union_tag_invalid"):
            message = f"{message}"
        lines.append(f"{path}: field '{field}': {message}")
    return "\n".join(lines)


def load_spec(path: Path, spec_type: type[SpecT], defaults: dict | None = None) -> SpecT:
    """Read and validate `path` as `spec_type` (keys of `defaults` fill missing ones, e.g. `name`)."""
    data = {**(defaults or {}), **read_yaml(Path(path))}
    try:
        return spec_type.model_validate(data)
    except ValidationError as error:
        raise OptimError(format_validation_error(error, Path(path))) from error

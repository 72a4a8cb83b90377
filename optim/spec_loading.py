"""Load a YAML spec into a typed pydantic model; every error names the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from optim.errors import OptimError
from optim.yaml_strict import load_yaml_strict

SpecT = TypeVar("SpecT", bound=BaseModel)


def read_yaml(path: Path) -> dict:
    """The spec's YAML mapping, read strictly (`optim.yaml_strict`), with clear errors for a missing file,
    invalid YAML, duplicate keys, a binary or non-UTF-8 file, or one too large or too deep."""
    path = Path(path)
    if not path.is_file():
        raise OptimError("spec file not found" if not path.exists() else "not a file", path=path, fix="check the path")
    data = load_yaml_strict(path)
    if not isinstance(data, dict):
        raise OptimError("a spec must be a YAML mapping (key: value)", path=path, fix="see the manual's spec reference (docs/spec.md)")
    return data


# A quoted value is never converted: say how to write it instead.
TYPE_HINTS = {"bool_type": "write true or false without quotes", "int_type": "write a whole number without quotes",
              "float_type": "write a number without quotes", "int_from_float": "write a whole number",
              "finite_number": "write a finite number"}


def format_validation_error(error: ValidationError, path: Path) -> str:
    """One line per problem: `file: field 'a.b': message`, plus a hint for unknown keys."""
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown key (typo?); remove it or see the manual's spec reference (docs/spec.md)"
        elif problem["type"] in TYPE_HINTS and isinstance(problem.get("input"), str):
            message = f"{message}, got the string {problem['input']!r}; {TYPE_HINTS[problem['type']]}"
        lines.append(f"{path}: field '{field}': {message}")
    return "\n".join(lines)


def load_spec(path: Path, spec_type: type[SpecT], defaults: dict | None = None) -> SpecT:
    """Read and validate `path` as `spec_type` (keys of `defaults` fill missing ones, e.g. `name`)."""
    data = {**(defaults or {}), **read_yaml(Path(path))}
    try:
        return spec_type.model_validate(data)
    except ValidationError as error:
        raise OptimError(format_validation_error(error, Path(path))) from error

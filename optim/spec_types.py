"""Building blocks of every spec: a strict base model and the bounded field types specs share.

Strict means no guessing: unknown keys are errors, a quoted "yes" is not a boolean, "0.5" is not a
number, 1.5 is not an integer, and no float may be inf or NaN. Paths and (height, width) pairs are the
exceptions that YAML cannot spell natively: a string becomes a path, a list becomes a pair.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict


class StrictModel(BaseModel):
    """Base of every spec: unknown keys are errors, not warnings; no type coercion; finite floats only."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _printable(value: str | Path) -> str | Path:
    """Paths and names hold no control characters (a NUL byte would crash the file system calls)."""
    if any(ord(char) < 32 for char in str(value)):
        raise ValueError(f"{str(value)!r} holds a control character; write a plain name or path")
    return value


def _inside_working_folder(path: Path) -> Path:
    """An output folder from a spec stays under the folder the command runs in."""
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"'{path}' leaves the working folder; a spec may only name a relative folder without '..' "
                         "(to write elsewhere, pass the folder explicitly on the command line: --out DIR, or "
                         "--output-dir DIR for optim.finetune)")
    return path


SpecPath = Annotated[Path, Strict(False), AfterValidator(_printable)]
OutputDir = Annotated[Path, Strict(False), AfterValidator(_printable), AfterValidator(_inside_working_folder)]
ModelRef = Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_printable)]
SplitName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
Dimension = Annotated[int, Field(ge=16, le=4096)]
ImageSize = Annotated[tuple[Dimension, Dimension], Strict(False)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1, description="random seed (NumPy accepts 0 .. 2**32-1)")]
Threads = Annotated[int, Field(ge=1, le=256, description="intra-op threads")]
BatchSize = Annotated[int, Field(ge=1, le=256)]
Steps = Annotated[int, Field(ge=1, le=10_000_000)]

"""Results that survive: one JSON file per finished variant, written atomically, so an interrupted run
resumes where it stopped and nothing measured is lost."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from optim.errors import OptimError


def safe_child(root: Path, name: str) -> Path:
    """`root/name`, refusing any name that would escape `root` (e.g. '../x')."""
    path = (root / name).resolve()
    if root.resolve() not in path.parents and path != root.resolve():
        raise OptimError(f"output path '{name}' would leave the output folder {root}", field="name",
                         fix="use a plain name without '/' or '..'")
    return path


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON to a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        json.dump(data, out, indent=2, default=str)
    os.replace(tmp, path)


class ResultStore:
    """`<out_dir>/variants/<name>.json` per variant; a variant counts as done only when it finished OK
    with the same resolved spec (a changed variant is measured again)."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.variant_dir = out_dir / "variants"

    def path_of(self, name: str) -> Path:
        return safe_child(self.variant_dir, f"{name}.json")

    def load(self, name: str) -> dict | None:
        """The stored record of `name`, or None (a corrupt record is ignored and re-measured)."""
        path = self.path_of(name)
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def finished(self, name: str, resolved_spec: dict) -> dict | None:
        """The stored record if that variant finished OK with exactly this spec."""
        record = self.load(name)
        if record and record.get("status") == "ok" and record.get("spec") == resolved_spec:
            return record
        return None

    def save(self, record: dict) -> None:
        write_json_atomic(self.path_of(record["name"]), record)

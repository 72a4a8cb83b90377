"""Results that survive: one JSON file per finished variant, written atomically, so an interrupted run
resumes where it stopped and nothing measured is lost; a stored record is reused only when its fingerprint
(`optim.fingerprint`: everything that determines its figures) matches; one runner per output folder."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from optim.atomic import is_disk_full, write_json_atomic
from optim.errors import OptimError
from optim.fingerprint import differences

__all__ = ["ResultStore", "disk_full_is_an_error", "make_output_folder", "safe_child", "write_json_atomic"]


def safe_child(root: Path, name: str) -> Path:
    """`root/name`, refusing any name that would escape `root` (e.g. '../x')."""
    path = (root / name).resolve()
    if root.resolve() not in path.parents and path != root.resolve():
        raise OptimError(f"output path '{name}' would leave the output folder {root}", field="name",
                         fix="use a plain name without '/' or '..'")
    return path


def make_output_folder(path: Path) -> None:
    """`mkdir -p path`, with a clear error when a file is in the way or the folder may not be created."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError, PermissionError) as error:
        raise OptimError(f"cannot create the output folder ({error.strerror}: {error.filename})", path=path,
                         fix="choose another output folder: one that is not a file and that you may write to") \
            from error


@contextlib.contextmanager
def disk_full_is_an_error(out_dir: Path) -> Iterator[None]:
    """Turn 'no space left on device' into a clear error: finished variants are kept, a re-run resumes."""
    try:
        yield
    except OSError as error:
        if not is_disk_full(error):
            raise
        raise OptimError(f"the disk is full ({error.strerror}{': ' + str(error.filename) if error.filename else ''}); "
                         f"every variant that finished before is kept in {Path(out_dir) / 'variants'}",
                         path=out_dir, fix="free some space, then run the same command again: it resumes") from error


class ResultStore:
    """`<out_dir>/variants/<name>.json` per variant; a variant counts as done only when it finished OK with the
    same fingerprint (anything that changes its figures makes it be measured again)."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.variant_dir = self.out_dir / "variants"

    def path_of(self, name: str) -> Path:
        return safe_child(self.variant_dir, f"{name}.json")

    def load(self, name: str) -> dict | None:
        """The stored record of `name`, or None (a corrupt record is ignored and re-measured)."""
        path = self.path_of(name)
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def finished(self, name: str, fingerprint: dict) -> tuple[dict | None, list[str]]:
        """(the stored record, []) if that variant finished OK with exactly this fingerprint; else (None, why it must
        be measured again), where an empty reason list means nothing usable was stored."""
        record = self.load(name)
        if record is None:
            return None, []
        if record.get("status") != "ok":
            return None, [f"the stored record is {record.get('status')!r}, not 'ok'"]
        changed = differences(record.get("fingerprint"), fingerprint)
        return (None, changed) if changed else (record, [])

    def save(self, record: dict) -> None:
        write_json_atomic(self.path_of(record["name"]), record)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold `<out_dir>/.lock` (an advisory lock the system drops when the process ends, even by kill -9);
        a second runner on the same folder stops with a clear error instead of measuring alongside."""
        make_output_folder(self.out_dir)
        path = self.out_dir / ".lock"
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                owner = handle.read().strip() or "another process"
                raise OptimError(f"another run is writing to this folder (process {owner}); two runs at once would "
                                 "measure the same variants and slow each other's timings", path=self.out_dir,
                                 fix="wait for it to finish, or give this run another folder with --out") from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

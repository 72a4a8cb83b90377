"""Atomic file writes: a reader (or a re-run after kill -9 or a full disk) sees the old file or the new one,
never half of one, and no temporary file is left behind."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to a temporary file beside `path`, flush it to disk, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~_umask())  # mkstemp makes it private (0600); give it a plain file's mode
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, data: object) -> None:
    """`write_text_atomic` of `data` as indented JSON."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str))


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` is the operating system saying the disk (or the user's quota) is full."""
    return isinstance(error, OSError) and error.errno in DISK_FULL

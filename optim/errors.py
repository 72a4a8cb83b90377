"""User-facing errors: each names the file, the field and the fix, and maps to an exit code."""

from __future__ import annotations

import importlib
from types import ModuleType


class OptimError(Exception):
    """An error caused by user input; the CLI prints it without a traceback and exits with `exit_code`."""

    exit_code = 2

    def __init__(self, message: str, *, path: object = None, field: str | None = None, fix: str | None = None):
        parts = []
        if path is not None:
            parts.append(f"{path}")
        if field:
            parts.append(f"field '{field}'")
        where = ": ".join(parts)
        text = f"{where}: {message}" if where else message
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)


class MissingExtraError(OptimError):
    """An optional backend is not installed."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(f"{purpose} needs the Python package '{package}', which is not installed",
                         fix=f"pip install 'detr-optim-lab[{extra}]'  (or: pip install {package})")


def import_extra(module: str, package: str, extra: str, purpose: str) -> ModuleType:
    """Import `module` on first use; when it is missing, an error naming the extra that installs `package`."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(package, extra, purpose) from error

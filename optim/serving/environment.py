"""Run serving code in an interpreter where PyTriton works (two traps measured on our machines):
- PyTriton 0.7 returns empty outputs with numpy 2: the server runs in `.venv-serve` (numpy < 2, `make serve-setup`);
- its Python-backend stub may load another libpython unless this interpreter's LIBDIR is on LD_LIBRARY_PATH.
`reexec_for_serving` fixes both by re-executing the command, so one command works from either environment."""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
from pathlib import Path

from optim.errors import OptimError

ROOT = Path(__file__).resolve().parents[2]
SERVE_VENV = ROOT / ".venv-serve"
GUARD = "OPTIM_SERVING_REEXEC"  # set once we re-executed into the serving interpreter: never loop


def serving_ready() -> bool:
    """PyTriton importable and numpy < 2 in this interpreter."""
    import numpy

    return importlib.util.find_spec("pytriton") is not None and int(numpy.__version__.split(".")[0]) < 2


def serving_python() -> Path:
    """The serving environment's interpreter ($OPTIM_SERVE_PYTHON, else .venv-serve/bin/python)."""
    return Path(os.environ.get("OPTIM_SERVE_PYTHON", SERVE_VENV / "bin" / "python"))


def reexec_for_serving(module: str, argv: list[str]) -> None:
    """Re-execute `python -m module argv` in the serving interpreter and/or with LIBDIR on LD_LIBRARY_PATH;
    returns only when this process is already right."""
    env = dict(os.environ)
    python = Path(sys.executable)
    if not serving_ready():
        python = serving_python()
        if env.get(GUARD) or not python.is_file():
            raise OptimError("the server needs PyTriton with numpy < 2 (PyTriton 0.7 returns empty outputs with "
                             f"numpy 2), and {python} " + ("has neither" if env.get(GUARD) else "does not exist"),
                             path=python, fix="make serve-setup   (creates .venv-serve)")
        env[GUARD] = "1"
    libdir = sysconfig.get_config_var("LIBDIR") if python == Path(sys.executable) else None
    paths = [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
    if python == Path(sys.executable) and (not libdir or libdir in paths):
        return
    if libdir:
        env["LD_LIBRARY_PATH"] = ":".join([libdir, *paths])
    os.execve(str(python), [str(python), "-m", module, *argv], env)

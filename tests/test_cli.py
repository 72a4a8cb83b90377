"""The `detr-lab` console script: every command reaches its `python -m` main, with the same options and help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from optim.commands import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
DETR_LAB = Path(sys.executable).parent / "detr-lab"
ENV = {**os.environ, "COLUMNS": "100"}  # argparse wraps help to the terminal's width


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, env=ENV, timeout=120, check=False)


def words(text: str) -> list[str]:
    return text.split()


def test_console_script_is_installed_and_lists_every_command():
    assert DETR_LAB.is_file(), "detr-lab not installed: pip install -e . (make setup does)"
    result = run(str(DETR_LAB), "--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in result.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_help_is_the_modules_help(name):
    module = COMMANDS[name][0].removesuffix(".__main__")
    via_script = run(str(DETR_LAB), name, "--help")
    via_module = run(sys.executable, "-m", module, "--help")
    assert via_script.returncode == via_module.returncode == 0, via_script.stderr + via_module.stderr
    assert via_script.stdout.startswith(f"usage: detr-lab {name}")
    # the same text, but for the program's name (and the usage line's wrapping, which depends on that name's length)
    assert words(via_script.stdout.replace(f"detr-lab {name}", f"python -m {module}")) == words(via_module.stdout)


def test_validate_passes_the_examples_and_fails_a_bad_spec_cleanly(tmp_path):
    # --specs-only: finetune_continue.yaml starts from the model another spec's run writes
    ok = run(str(DETR_LAB), "validate", "--specs-only", "experiments/")
    assert ok.returncode == 0 and ok.stdout.count("ok ") == len(list((ROOT / "experiments").glob("*.yaml")))
    bad = tmp_path / "bad.yaml"
    bad.write_text("variants: [{name: a, engine: {kind: onnxruntime}}]\nbatch_sizes: [0]\n")
    result = run(str(DETR_LAB), "validate", str(bad))
    assert result.returncode == 2
    assert "bad.yaml: field 'batch_sizes.0'" in result.stderr and "Traceback" not in result.stderr


def test_user_error_exits_2_without_traceback(tmp_path):
    result = run(str(DETR_LAB), "run", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert "spec file not found" in result.stderr and "Traceback" not in result.stderr


def test_schema_command_checks_the_committed_schemas():
    assert run(str(DETR_LAB), "schema", "--check").returncode == 0
    assert run(sys.executable, "-m", "optim", "schema", "--check").returncode == 0

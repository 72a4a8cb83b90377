"""The wheel ships what a user runs (code, weights, config, model card, metrics), not the logs of past runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "optim" / "models" / "weights"
# Build outputs and local data at the top of the tree never belong in what is packaged.
NOT_SOURCE = {".venv", ".git", "build", "dist", "site", "data", "runs", "reports", "ci-artifacts", ".pytest_cache",
              ".benchmarks"}


def _not_source(folder: str, names: list[str]) -> set[str]:
    top = Path(folder) == ROOT
    return {n for n in names if (top and n in NOT_SOURCE) or n == "__pycache__" or n.endswith(".egg-info")}


def build_wheel(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the tree, so that setuptools' build/ folder never lands in the repo."""
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=_not_source)
    out = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(source),
                    "-w", str(out)], check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("*.whl")
    return wheel


def test_wheel_ships_weights_not_training_logs(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    card = "optim/models/weights/synth-detr/"
    for shipped in ("model.safetensors", "config.json", "optim.json", "metrics.json", "README.md"):
        assert card + shipped in names, f"{shipped} missing from the wheel"
    assert not [n for n in names if n.endswith(".csv")], "training logs belong in docs/training-logs/, not the wheel"
    assert "optim/report/report.css" in names and "optim/report/templates/report.html" in names and any(n.startswith("detr_optim_lab") for n in names)

    weights = sum(f.stat().st_size for f in WEIGHTS.rglob("*.safetensors"))
    assert wheel.stat().st_size <= weights + 1_000_000, f"wheel {wheel.stat().st_size} B > weights {weights} B + 1 MB"


def test_training_logs_kept_in_the_repository():
    logs = sorted((ROOT / "docs" / "training-logs").glob("training_log_*.csv"))
    assert len(logs) >= 14
    assert not list(WEIGHTS.rglob("*.csv"))

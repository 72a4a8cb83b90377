"""The manual: it builds in strict mode, its spec reference covers every field of the spec models, and the specs it
shows are valid."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from optim.finetune.spec import FinetuneSpec
from optim.reference import FIELD_NOTES, render_reference, spec_fields
from optim.spec import ExperimentSpec

ROOT = Path(__file__).resolve().parent.parent
SPECS = (ExperimentSpec, FinetuneSpec)


def all_fields(model: type[BaseModel], seen: set | None = None) -> set[tuple[str, str]]:
    """(model, field) for the model and every model inside it, found by walking the annotations."""
    seen = set() if seen is None else seen
    if model in seen:
        return set()
    seen.add(model)
    found = {(model.__name__, name) for name in model.model_fields}

    def nested(annotation) -> list[type[BaseModel]]:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [annotation]
        return [m for arg in getattr(annotation, "__args__", ()) for m in nested(arg)]

    for field in model.model_fields.values():
        for inner in nested(field.annotation):
            found |= all_fields(inner, seen)
    return found


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.__name__)
def test_reference_has_a_described_row_for_every_field(spec):
    reference = render_reference(spec)
    sections = dict(re.findall(r"### (\w+)\n\n.*?\n\n(\| field .*?)(?:\n\n|\Z)", reference + "\n\n", re.DOTALL))
    fields = all_fields(spec)
    assert len(fields) > 10
    for model, name in fields:
        rows = [row for row in sections[model].splitlines() if row.startswith(f"| `{name}` |")]
        assert len(rows) == 1, f"{model}.{name} missing from the reference"
        description = rows[0].rstrip(" |").rsplit(" | ", 1)[1].strip()
        assert description and description != "|", (
            f"{model}.{name} has no description: add Field(description=...) or a FIELD_NOTES entry")
    assert {f"{m}.{n}" for m, n in fields} == set(spec_fields(spec))


def test_field_notes_name_real_fields():
    known = {field for spec in SPECS for field in spec_fields(spec)}
    assert not set(FIELD_NOTES) - known, "FIELD_NOTES entries for fields that no longer exist"


def test_reference_shows_types_defaults_and_bounds():
    reference = render_reference(ExperimentSpec)
    assert "| `calibration_images` | int | `64` | ≥ 1, ≤ 10000 |" in reference
    assert "| `batch_sizes` | list of int (≥ 1, ≤ 256) | `[1]` |" in reference
    assert "[QuantizeStep](#quantizestep) or [PruneStep](#prunestep)" in reference


def yaml_blocks(page: Path) -> list[str]:
    return re.findall(r"```yaml\n(# yaml-language-server: .*?)```", page.read_text(), re.DOTALL)


@pytest.mark.parametrize("page", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_specs_shown_in_the_manual_are_valid(page):
    for block in yaml_blocks(page):
        data = yaml.safe_load(block)
        if isinstance(data, dict) and len(data) > 1:  # a whole spec, not the schema line alone
            (FinetuneSpec if "trainer" in data else ExperimentSpec).model_validate({"name": "doc", **data})


def test_manual_builds_in_strict_mode(tmp_path):
    """`make docs`: a broken link or anchor, or a page missing from the navigation, fails the build."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    site = tmp_path / "site"
    for page in ("index.html", "reference/spec/index.html", "reference/cli/index.html", "model-card/index.html"):
        assert (site / page).is_file(), page
    spec_page = (site / "reference/spec/index.html").read_text()
    assert "calibration_images" in spec_page and "accuracy_tolerance" in spec_page
    for page in site.rglob("*.html"):  # offline: no font, script, style or image from the network
        assert not re.search(r"<(?:script|img|link)\b[^>]*(?:src|href)=\"(?:https?:)?//", page.read_text()), page


def test_readme_is_a_front_page_whose_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 250
    assert "make run " in readme and "make test " in readme
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    assert len(links) > 10
    for link in links:
        if not link.startswith(("http://", "https://")):
            assert (ROOT / link).exists(), f"README links to missing {link}"

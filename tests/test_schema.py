"""The committed JSON Schemas match the spec models, and every example spec names and satisfies its schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from optim.schema import SCHEMAS, main, render, stale_schemas

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "experiments").glob("*.yaml"))
SCHEMA_LINE = re.compile(r"^# yaml-language-server: \$schema=(\.\./schemas/[a-z]+\.schema\.json)$")


def test_committed_schemas_are_up_to_date():
    assert not stale_schemas(ROOT / "schemas"), "schemas/ is out of date: run `python -m optim.schema`"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_spec_validates_against_its_schema(path):
    first = path.read_text().splitlines()[0]
    match = SCHEMA_LINE.match(first)
    assert match, f"{path.name}: first line must be '# yaml-language-server: $schema=../schemas/<x>.schema.json'"
    schema_file = (path.parent / match.group(1)).resolve()
    spec = yaml.safe_load(path.read_text())
    # the same rule as `optim.validate`: a spec naming a trainer is a fine-tuning spec
    assert schema_file.name == ("finetune.schema.json" if "trainer" in spec else "experiment.schema.json")
    schema = json.loads(schema_file.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(spec)


def test_schema_rejects_a_typo_and_an_out_of_range_number():
    validator = jsonschema.Draft202012Validator(json.loads(render(SCHEMAS["experiment.schema.json"])))
    good = {"variants": [{"name": "a", "engine": {"kind": "onnxruntime"}}]}
    assert not list(validator.iter_errors(good))
    assert list(validator.iter_errors({**good, "varaints": []}))  # unknown key
    assert list(validator.iter_errors({**good, "batch_sizes": [0]}))  # below the bound
    assert list(validator.iter_errors({**good, "variants": [{"name": "a", "steps": [{"kind": "quantise"}]}]}))


def test_schema_command_writes_and_checks(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--check"]) == 1  # nothing there yet
    assert main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(SCHEMAS)
    assert main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "finetune.schema.json").write_text("{}\n")
    assert main(["--out", str(tmp_path), "--check"]) == 1
    assert "finetune.schema.json" in capsys.readouterr().out

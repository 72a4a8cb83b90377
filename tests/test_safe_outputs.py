"""The user's files are sacred: the synthetic generator writes only into folders it owns, outputs named by a
spec stay under the working folder, and every file a run writes is replaced atomically."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from optim.atomic import write_json_atomic, write_text_atomic
from optim.data.synthetic import MARKER, SplitSpec, SyntheticSpec, claim_folder, ensure_dataset
from optim.errors import OptimError
from optim.finetune.spec import FinetuneSpec
from optim.spec import ExperimentSpec
from optim.spec_loading import load_spec

SMALL = SyntheticSpec(image_size=64, splits={"val": SplitSpec(2, 2), "test": SplitSpec(2, 2)}, seed=3)


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` with the hash of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture
def users_coco(tmp_path, tiny_dataset_root) -> Path:
    """A user's own COCO folder: the tiny data set's files, renamed as a person would, without the marker."""
    root = tmp_path / "my_coco"
    shutil.copytree(tiny_dataset_root, root, ignore=shutil.ignore_patterns(MARKER))
    for split in ("val", "test"):
        path = root / "annotations" / f"instances_{split}.json"
        coco = json.loads(path.read_text())
        coco["info"] = {"description": "my own labelled frames"}
        path.write_text(json.dumps(coco))
    (root / "README.txt").write_text("my notes")
    return root


def test_generator_refuses_a_users_folder_and_changes_nothing(users_coco):
    before = _snapshot(users_coco)
    with pytest.raises(OptimError, match=r"field .data.root.: refusing to generate") as caught:
        ensure_dataset(users_coco, ("val", "test"), SMALL)
    assert "dataset: coco" in str(caught.value) and str(users_coco) in str(caught.value)
    assert _snapshot(users_coco) == before


@pytest.mark.parametrize("content", ["a file only", "an unknown folder", "a foreign annotation file"])
def test_generator_refuses_any_folder_with_other_files(tmp_path, content):
    root = tmp_path / "data"
    (root / "annotations").mkdir(parents=True)
    if content == "a file only":
        (root / "notes.md").write_text("x")
    elif content == "an unknown folder":
        (root / "images").mkdir()
    else:
        (root / "annotations" / "instances_val.json").write_text('{"info": {}, "images": []}')
    before = _snapshot(root)
    with pytest.raises(OptimError, match="refusing"):
        ensure_dataset(root, ("val",), SMALL)
    assert _snapshot(root) == before and not (root / MARKER).exists()


def test_generator_writes_into_new_empty_owned_and_legacy_folders(tmp_path):
    new = tmp_path / "new" / "deeper"
    ensure_dataset(new, ("val",), SMALL)
    assert (new / MARKER).is_file() and (new / "annotations" / "instances_val.json").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    ensure_dataset(empty, ("val",), SMALL)
    assert (empty / MARKER).is_file()
    ensure_dataset(new, ("val",), SyntheticSpec(image_size=64, splits={"val": SplitSpec(3, 1)}, seed=3))  # owned
    assert json.loads((new / "annotations" / "instances_val.json").read_text())["info"]["clips"] == 3
    legacy = tmp_path / "legacy"  # written by a generator that had no marker yet: adopted
    shutil.copytree(empty, legacy, ignore=shutil.ignore_patterns(MARKER))
    ensure_dataset(legacy, ("val", "test"), SMALL)
    assert (legacy / MARKER).is_file() and (legacy / "annotations" / "instances_test.json").is_file()


def test_data_root_that_is_a_file_and_unknown_split_are_clear_errors(tmp_path):
    a_file = tmp_path / "data.txt"
    a_file.write_text("not a folder")
    with pytest.raises(OptimError, match="is a file"):
        claim_folder(a_file)
    with pytest.raises(OptimError, match=r"'holdout'.*not splits of the synthetic"):
        ensure_dataset(tmp_path / "new", ("holdout",), SMALL)
    assert not (tmp_path / "new").exists()


def test_a_malformed_annotation_file_in_an_owned_folder_is_regenerated(tmp_path):
    ensure_dataset(tmp_path, ("val",), SMALL)
    ann_file = tmp_path / "annotations" / "instances_val.json"
    ann_file.write_text("{truncated")
    ensure_dataset(tmp_path, ("val",), SMALL)
    assert json.loads(ann_file.read_text())["info"]["clips"] == 2


@pytest.mark.parametrize("output_dir", ["/tmp/elsewhere", "../outside", "reports/../../outside"])
@pytest.mark.parametrize("kind", ["experiment", "finetune"])
def test_spec_output_folders_stay_under_the_working_folder(tmp_path, output_dir, kind):
    path = tmp_path / "spec.yaml"
    body = "variants: [{name: a}]\n" if kind == "experiment" else "trainer: lightning\n"
    path.write_text(f"name: t\n{body}output_dir: {output_dir}\n")
    spec_type = ExperimentSpec if kind == "experiment" else FinetuneSpec
    with pytest.raises(OptimError, match=r"field 'output_dir'.*leaves the working folder.*--out") as caught:
        load_spec(path, spec_type)
    assert str(path) in str(caught.value)


def test_atomic_write_keeps_the_old_file_when_the_disk_is_full(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    write_json_atomic(path, {"kept": True})

    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("optim.atomic.os.fsync", full)
    with pytest.raises(OSError):
        write_text_atomic(path, "x" * 1000)
    assert json.loads(path.read_text()) == {"kept": True}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no stray temporary file


@pytest.mark.parametrize("module, flag", [("optim.run", "--out"), ("optim.finetune", "--output-dir")])
def test_an_output_folder_blocked_by_a_file_is_a_clear_error(tmp_path, module, flag):
    (tmp_path / "a_file").write_text("x")
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nmodel: tiny-detr-arch\ndata: {root: data}\nvariants: [{name: a}]\n" if module == "optim.run"
                    else "name: s\ntrainer: lightning\nmodel: {arch: tiny-detr}\ndata: {root: data}\n"
                         "input_size: [64, 64]\nsteps: 1\n")
    result = subprocess.run([sys.executable, "-m", module, str(spec), flag, str(tmp_path / "a_file" / "out")],
                            capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "cannot create the output folder" in result.stderr and not (tmp_path / "data").exists()  # nothing made


def test_generator_cli_refuses_a_users_folder(users_coco):
    before = _snapshot(users_coco)
    result = subprocess.run([sys.executable, "-m", "optim.data.synthetic", "--out", str(users_coco), "--splits", "val"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "refusing" in result.stderr and "Traceback" not in result.stderr
    assert _snapshot(users_coco) == before

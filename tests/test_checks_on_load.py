"""Checks made when models, checkpoints and images are loaded: an incomplete safetensors file, a pickled
checkpoint holding more than weights, an image that cannot be decoded or is not the size its annotation says."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from optim.data.coco import CocoDetection, CocoFolder
from optim.data.synthetic import MARKER
from optim.errors import OptimError
from optim.models.zoo import SHIPPED, load_model


def _checkpoint(tmp_path: Path, keep) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(SHIPPED["synth-detr"] / "config.json", folder)
    tensors = load_file(SHIPPED["synth-detr"] / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if keep(k, sorted(tensors).index(k), len(tensors))},
              folder / "model.safetensors", metadata={"format": "pt"})
    return folder


@pytest.mark.parametrize("keep", [
    lambda key, index, count: index % 2 == 0,  # half of the tensors
    lambda key, index, count: False,  # none
    lambda key, index, count: key != "class_labels_classifier.weight",  # one
], ids=["half", "none", "one"])
def test_a_checkpoint_missing_tensors_is_an_error(tmp_path, keep):
    folder = _checkpoint(tmp_path, keep)
    with pytest.raises(OptimError, match=r"lacks \d+ tensors the architecture needs") as caught:
        load_model(str(folder))
    assert "model.safetensors" in str(caught.value) and "allow_missing_weights: true" in str(caught.value)


def test_allow_missing_weights_loads_it_with_a_warning(tmp_path, capsys):
    folder = _checkpoint(tmp_path, lambda key, index, count: index % 2 == 0)
    assert load_model(str(folder), allow_missing_weights=True).model is not None
    assert "tensors missing, left at random values" in capsys.readouterr().err


def test_a_complete_checkpoint_loads_without_complaint(tmp_path, capsys):
    load_model(str(_checkpoint(tmp_path, lambda key, index, count: True)))
    assert "missing" not in capsys.readouterr().err


class _Planted:
    """Unpickling this would create a file: what a malicious checkpoint could do instead."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.slow
def test_lightning_refuses_to_unpickle_a_planted_checkpoint(tmp_path, tiny_dataset_root):
    out = tmp_path / "runs" / "planted"
    (out / "checkpoints").mkdir(parents=True)
    marker = tmp_path / "code-ran"
    torch.save({"state_dict": {}, "payload": _Planted(marker)}, out / "checkpoints" / "last.ckpt")
    spec = tmp_path / "planted.yaml"
    spec.write_text(f"name: planted\ntrainer: lightning\nmodel: {{arch: tiny-detr}}\n"
                    f"data: {{root: {tiny_dataset_root}, generate: false}}\ninput_size: [64, 64]\nsteps: 2\n"
                    "batch_size: 2\nwarmup_steps: 1\nthreads: 1\noutput_dir: runs\n")
    result = subprocess.run([sys.executable, "-m", "optim.finetune", str(spec)], capture_output=True, text=True,
                            timeout=300, check=False, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "refusing to resume" in result.stderr and "last.ckpt" in result.stderr
    assert not marker.exists()


def _copy(tmp_path: Path, root: Path) -> Path:
    copy = tmp_path / "coco"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(MARKER))
    return copy


@pytest.mark.parametrize("damage, expected", [
    (lambda path: path.write_bytes(path.read_bytes()[:40]), "cannot be decoded"),  # truncated JPEG
    (lambda path: path.write_bytes(b"GIF89a not really"), "cannot be decoded"),
    (lambda path: path.write_text(""), "cannot be decoded"),
    (lambda path: __import__("PIL.Image").Image.new("RGB", (32, 48)).save(path, "JPEG"), "32x48 pixels"),
], ids=["truncated", "garbage", "empty", "other-size"])
def test_a_broken_image_names_the_file_and_image_id(tmp_path, tiny_dataset_root, damage, expected):
    root = _copy(tmp_path, tiny_dataset_root)
    dataset = CocoDetection(CocoFolder.from_root(root, "test"), (64, 64))
    image_id = dataset.image_ids[1]
    path = root / "test" / dataset.coco.imgs[image_id]["file_name"]
    damage(path)
    with pytest.raises(OptimError, match=f"image id {image_id}") as caught:
        dataset[1]
    assert expected in str(caught.value) and str(path) in str(caught.value)


@pytest.mark.slow
def test_run_stops_on_a_broken_evaluation_image_before_any_variant(tmp_path, tiny_dataset_root):
    root = _copy(tmp_path, tiny_dataset_root)
    coco = json.loads((root / "annotations" / "instances_test.json").read_text())
    broken = root / "test" / coco["images"][2]["file_name"]
    broken.write_bytes(b"\xff\xd8\xff not a jpeg")
    spec = tmp_path / "s.yaml"
    spec.write_text(f"name: s\nmodel: tiny-detr-arch\ndata: {{dataset: coco, root: {root}, eval_images: 8}}\n"
                    "profile: {stages: false}\nvariants: [{name: a}]\n")
    result = subprocess.run([sys.executable, "-m", "optim.run", str(spec)], capture_output=True, text=True,
                            timeout=300, check=False, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"image id {coco['images'][2]['id']} cannot be decoded" in result.stderr and str(broken) in result.stderr
    assert not (tmp_path / "reports" / "s" / "variants").exists()

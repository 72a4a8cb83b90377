"""Checks of the files a valid spec points at — models, data sets — made before anything heavy is imported
or anything is written (by `optim.validate`, and by `optim.run` / `optim.finetune` before they start)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from optim.data.synthetic import check_writable
from optim.data.validation import read_coco_json
from optim.errors import OptimError
from optim.finetune.spec import FinetuneSpec
from optim.models.zoo import DEFAULT_INPUT_SIZE, SHIPPED, describe_zoo, input_size_of
from optim.spec import ExperimentSpec

MAX_CHECKED_JSON = 64 << 20  # larger annotation files are checked when they are loaded, not twice


@contextlib.contextmanager
def _named(spec_path: Path) -> Iterator[None]:
    """Prefix errors about a file the spec points at (data root, optim.json, annotations) with the spec."""
    try:
        yield
    except OptimError as error:
        raise OptimError(str(error), path=spec_path) from error


def check_model(name: str, spec_path: Path, field: str) -> None:
    """A zoo name, an architecture, a hub id, or a `save_pretrained` folder with config.json, model.safetensors
    and (if present) a readable optim.json."""
    if name in SHIPPED or (name.endswith("-arch") and name[: -len("-arch")] in DEFAULT_INPUT_SIZE):
        return
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise OptimError(f"model '{name}' is a file; a model is a save_pretrained folder", path=spec_path,
                             field=field, fix="point at the folder holding config.json and model.safetensors")
        for needed in ("config.json", "model.safetensors"):
            if not (path / needed).is_file():
                raise OptimError(f"model folder '{name}' has no {needed}", path=spec_path, field=field,
                                 fix="point at a folder written by save_pretrained (config.json + model.safetensors)")
        with _named(spec_path):
            input_size_of(path)
        return
    if name.count("/") == 1 and not name.startswith((".", "/", "~")):
        return  # a hub id: resolved (from the local cache, or the network) when the run starts
    if "/" in name or name.startswith((".", "~")):
        raise OptimError(f"model folder '{name}' does not exist", path=spec_path, field=field,
                         fix="check the path (relative to the folder you run in), or first run the spec that writes it")
    raise OptimError(f"model '{name}' is not a zoo name, an existing folder or a hub id", path=spec_path, field=field,
                     fix="use one of: " + "; ".join(describe_zoo()))


def check_coco_split(root: Path, split: str, spec_path: Path, field: str) -> None:
    """`root/annotations/instances_<split>.json` exists and is a usable COCO file; `root/<split>/` is a folder."""
    root = Path(root)
    if not root.is_dir():
        raise OptimError(f"data root '{root}' is {'a file' if root.exists() else 'missing'}, not a folder",
                         path=spec_path, field="data.root", fix="point data.root at a COCO folder")
    annotations = root / "annotations" / f"instances_{split}.json"
    if not annotations.is_file():
        raise OptimError(f"split '{split}' has no annotation file {annotations}", path=spec_path, field=field,
                         fix=f"name a split that has <root>/annotations/instances_<split>.json, or add {annotations}")
    if not (root / split).is_dir():
        raise OptimError(f"split '{split}' has no image folder {root / split}", path=spec_path, field=field,
                         fix=f"put the images of {annotations.name} in {root / split}")
    if annotations.stat().st_size <= MAX_CHECKED_JSON:
        with _named(spec_path):
            read_coco_json(annotations)


def check_experiment_paths(spec: ExperimentSpec, spec_path: Path) -> None:
    """Everything an experiment spec points at exists and looks right."""
    check_model(spec.model, spec_path, "model")
    for index, variant in enumerate(spec.variants):
        for number, step in enumerate(variant.steps):
            if step.kind == "distill" and step.teacher != "baseline":
                check_model(step.teacher, spec_path, f"variants.{index}.steps.{number}.teacher")
    data = spec.data
    if data.dataset == "synthetic":
        with _named(spec_path):
            check_writable(data.root, (data.eval_split, data.calibration_split), new_folder_anywhere=False)
        return
    check_coco_split(data.root, data.eval_split, spec_path, "data.eval_split")
    check_coco_split(data.root, data.calibration_split, spec_path, "data.calibration_split")


def check_finetune_paths(spec: FinetuneSpec, spec_path: Path) -> None:
    """Everything a fine-tuning spec points at exists and looks right."""
    if spec.model.init is not None:
        check_model(spec.model.init, spec_path, "model.init")
    data = spec.data
    splits = tuple(s for s in (data.train_split, data.val_split, data.test_split) if s)
    if data.generate:
        with _named(spec_path):
            check_writable(data.root, splits, new_folder_anywhere=False)
        return
    for field, split in zip(("train_split", "val_split", "test_split"), splits, strict=False):
        check_coco_split(data.root, split, spec_path, f"data.{field}")

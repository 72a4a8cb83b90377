"""The synthetic data set generator and the COCO loader."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from optim.data.coco import CocoDetection, CocoFolder, collate_detection
from optim.data.synthetic import SplitSpec, SyntheticSpec, ensure_dataset, generate_split
from optim.errors import OptimError


def test_generation_is_deterministic(tmp_path):
    spec = SyntheticSpec(image_size=64, splits={"val": SplitSpec(clips=2, frames_per_clip=3)}, seed=5)
    first = generate_split(tmp_path / "a", "val", spec).read_text()
    second = generate_split(tmp_path / "b", "val", spec).read_text()
    assert first == second
    assert (tmp_path / "a" / "val" / "clip0000_frame000.jpg").read_bytes() == (tmp_path / "b" / "val" / "clip0000_frame000.jpg").read_bytes()


def test_ensure_dataset_regenerates_a_split_made_with_other_parameters(tmp_path):
    old = SyntheticSpec(image_size=64, splits={"val": SplitSpec(clips=2, frames_per_clip=4)}, seed=5)
    new = SyntheticSpec(image_size=64, splits={"val": SplitSpec(clips=3, frames_per_clip=2)}, seed=5)
    ann_file = tmp_path / "annotations" / "instances_val.json"
    ensure_dataset(tmp_path, ("val",), old)
    written = ann_file.stat().st_mtime_ns
    ensure_dataset(tmp_path, ("val",), old)  # same parameters: left alone
    assert ann_file.stat().st_mtime_ns == written
    ensure_dataset(tmp_path, ("val",), new)  # other parameters (e.g. an older generator version): regenerated
    coco = json.loads(ann_file.read_text())
    assert coco["info"]["clips"] == 3 and coco["info"]["version"] == SyntheticSpec.version
    # The earlier generation's frames that the new one does not overwrite are gone with it.
    assert sorted(p.name for p in (tmp_path / "val").glob("*.jpg")) == sorted(im["file_name"] for im in coco["images"])


def test_max_objects_is_per_split_and_leaves_other_splits_unchanged(tmp_path):
    def spec(train_max: int) -> SyntheticSpec:
        return SyntheticSpec(image_size=64, seed=5, splits={"train": SplitSpec(6, 2, max_objects=train_max),
                                                            "val": SplitSpec(3, 2, max_objects=2)})

    few, many = (json.loads(generate_split(tmp_path / name, "train", spec(m)).read_text()) for name, m in
                 (("few", 1), ("many", 10)))
    assert len(many["annotations"]) > len(few["annotations"])
    per_image = [sum(a["image_id"] == im["id"] for a in few["annotations"]) for im in few["images"]]
    assert max(per_image) <= 1
    # Val draws from its own random stream: the train split's parameters do not change it.
    val_a = generate_split(tmp_path / "few", "val", spec(1)).read_text()
    val_b = generate_split(tmp_path / "many", "val", spec(10)).read_text()
    assert val_a == val_b and json.loads(val_a)["info"]["max_objects"] == 2


def test_boxes_inside_images_and_splits_by_clip(tiny_dataset_root):
    data = {s: json.loads((tiny_dataset_root / "annotations" / f"instances_{s}.json").read_text())
            for s in ("train", "val", "test")}
    for split, coco in data.items():
        assert coco["images"], split
        sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
        for ann in coco["annotations"]:
            x, y, w, h = ann["bbox"]
            width, height = sizes[ann["image_id"]]
            assert 0 <= x and 0 <= y and x + w <= width + 1e-6 and y + h <= height + 1e-6 and w > 0 and h > 0
    # Each split draws its clips from its own seed: no val/test frame equals a train frame.
    train_bytes = {p.read_bytes() for p in (tiny_dataset_root / "train").glob("*.jpg")}
    assert not train_bytes & {p.read_bytes() for p in (tiny_dataset_root / "val").glob("*.jpg")}


def test_default_val_split_generates_in_seconds(tmp_path):
    import time

    start = time.perf_counter()
    generate_split(tmp_path, "val", SyntheticSpec())
    assert time.perf_counter() - start < 30  # generous bound on a loaded 2-core machine; typically ~0.2 s


def test_loader_targets_and_collate(tiny_dataset_root):
    dataset = CocoDetection(CocoFolder.from_root(tiny_dataset_root, "val"), (64, 64))
    pixels, target = dataset[0]
    assert pixels.shape == (3, 64, 64) and pixels.dtype == torch.float32
    assert target["boxes"].shape[1] == 4 and (target["boxes"] >= 0).all() and (target["boxes"] <= 1).all()
    batch = collate_detection([dataset[0], dataset[1]])
    assert batch["pixel_values"].shape == (2, 3, 64, 64) and len(batch["labels"]) == 2


def _copy_with(tmp_path, root, edit):
    coco = json.loads((root / "annotations" / "instances_val.json").read_text())
    edit(coco)
    (tmp_path / "annotations").mkdir(parents=True)
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps(coco))
    shutil.copytree(root / "val", tmp_path / "val")
    return CocoFolder.from_root(tmp_path, "val")


def test_non_contiguous_category_ids_map_to_contiguous_labels(tmp_path, tiny_dataset_root):
    def renumber(coco):  # COCO-style gaps: 1, 2, 3, 4 -> 3, 7, 11, 90
        new = {1: 3, 2: 7, 3: 11, 4: 90}
        for cat in coco["categories"]:
            cat["id"] = new[cat["id"]]
        for ann in coco["annotations"]:
            ann["category_id"] = new[ann["category_id"]]

    dataset = CocoDetection(_copy_with(tmp_path, tiny_dataset_root, renumber), (64, 64))
    assert dataset.category_ids == [3, 7, 11, 90]
    labels = torch.cat([dataset[i][1]["class_labels"] for i in range(len(dataset))])
    assert labels.numel() and labels.min() >= 0 and labels.max() <= 3


def test_unknown_category_id_is_a_clear_error(tmp_path, tiny_dataset_root):
    def break_it(coco):
        coco["annotations"][0]["category_id"] = 999

    with pytest.raises(OptimError, match=r"instances_val.json.*999"):
        CocoDetection(_copy_with(tmp_path, tiny_dataset_root, break_it), (64, 64))


def test_missing_image_is_a_clear_error(tmp_path, tiny_dataset_root):
    folder = _copy_with(tmp_path, tiny_dataset_root, lambda coco: None)
    dataset = CocoDetection(folder, (64, 64))
    (folder.images / dataset.coco.imgs[dataset.image_ids[0]]["file_name"]).unlink()
    with pytest.raises(OptimError, match="not found"):
        dataset[0]


def test_images_without_annotations_are_kept(tmp_path, tiny_dataset_root):
    folder = _copy_with(tmp_path, tiny_dataset_root, lambda coco: coco.update(annotations=[]))
    dataset = CocoDetection(folder, (64, 64))
    assert len(dataset) == 8 and dataset[0][1]["boxes"].shape == (0, 4)

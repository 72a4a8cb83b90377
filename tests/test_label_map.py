"""Model labels -> data-set categories: by name (a COCO-trained hub DETR, whose label index is the COCO id with
gaps), by position (architecture-only entries), or a clear error; and an architecture entry is sized to the
data set it is run on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from optim.errors import OptimError
from optim.evaluation.coco_eval import coco_metrics
from optim.evaluation.label_map import category_of_label
from optim.evaluation.postprocess import Detections

# facebook/detr-resnet-50's id2label starts like this: index = COCO category id, "N/A" for unused ids.
HUB_ID2LABEL = {0: "N/A", 1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "N/A", 6: "bus"}


def test_names_map_a_hub_model_with_gaps_onto_the_data_sets_ids():
    mapping = category_of_label(HUB_ID2LABEL, [1, 3, 6], ["person", "Car", "bus"])
    assert mapping == [None, 1, None, 3, None, None, 6]


def test_position_maps_generic_labels_when_the_counts_match():
    assert category_of_label({0: "LABEL_0", 1: "LABEL_1"}, [7, 9], ["cat", "dog"]) == [7, 9]


def test_neither_names_nor_count_is_a_clear_error():
    with pytest.raises(OptimError, match=r"3 classes .* 2 categories .* neither by name nor by count") as caught:
        category_of_label({0: "a", 1: "b", 2: "c"}, [1, 2], ["x", "y"], "model 'm'")
    assert "fix:" in str(caught.value) and "optim.finetune" in str(caught.value)


def _coco_with_gaps(tmp_path):
    """One image with a car (COCO id 3) and a person (id 1): a data set whose ids are not 0..n-1."""
    from pycocotools.coco import COCO

    data = {"images": [{"id": 5, "file_name": "a.jpg", "width": 100, "height": 100}],
            "annotations": [{"id": 1, "image_id": 5, "category_id": 3, "bbox": [10, 10, 40, 30], "area": 1200,
                             "iscrowd": 0},
                            {"id": 2, "image_id": 5, "category_id": 1, "bbox": [60, 20, 20, 50], "area": 1000,
                             "iscrowd": 0}],
            "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return COCO(str(path))


def test_hub_labels_score_by_name_on_coco_ids(tmp_path):
    coco = _coco_with_gaps(tmp_path)
    boxes = np.array([[10, 10, 50, 40], [60, 20, 80, 70], [0, 0, 5, 5]], np.float32)  # xyxy
    # The hub model's label 3 is "car", 1 is "person"; its label 2 ("bicycle") is not in the data set.
    detections = {5: Detections(boxes, np.array([0.9, 0.8, 0.7], np.float32), np.array([3, 1, 2]))}
    mapping = category_of_label(HUB_ID2LABEL, sorted(coco.getCatIds()), ["person", "car"])
    assert coco_metrics(coco, detections, mapping)["map"] == pytest.approx(1.0)
    # Scored by position instead, the same detections would be wrong (and label 3 out of range).
    swapped = {5: Detections(boxes[:2], np.array([0.9, 0.8], np.float32), np.array([0, 1]))}
    assert coco_metrics(coco, swapped, [1, 3])["map"] < 0.5


@pytest.mark.slow
def test_architecture_entry_is_sized_to_the_data_sets_classes(tiny_dataset_root, tmp_path):
    """tiny-detr-arch has 4 labels; on a 3-category copy of the data set its head gets 3 and every detection
    scores (before, label 3 indexed past the category list)."""
    root = tmp_path / "three"
    shutil.copytree(tiny_dataset_root, root)
    for split in ("val", "test"):
        path = root / "annotations" / f"instances_{split}.json"
        data = json.loads(path.read_text())
        data["categories"] = [c for c in data["categories"] if c["id"] != 4]
        data["annotations"] = [a for a in data["annotations"] if a["category_id"] != 4]
        path.write_text(json.dumps(data))
    spec = tmp_path / "three.yaml"
    spec.write_text(f"""
name: three
model: tiny-detr-arch
data: {{dataset: coco, root: {root}, eval_split: test, eval_images: 8, calibration_split: val, calibration_images: 2}}
batch_sizes: [1]
latency: {{warmup_iters: 1, min_iters: 2, max_iters: 3, max_seconds: 0.2, threads: 1}}
profile: {{stages: false}}
output_dir: reports
variants:
  - {{name: pytorch-fp32, engine: {{kind: pytorch}}}}
""")
    result = subprocess.run([sys.executable, "-m", "optim.run", str(spec)], capture_output=True, text=True,
                            timeout=300, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "reports" / "three" / "results.json").read_text())
    assert results["model"]["classes"] == 3
    variant = results["variants"][0]
    assert variant["status"] == "ok", variant.get("error")
    assert variant["accuracy"]["images"] == 8

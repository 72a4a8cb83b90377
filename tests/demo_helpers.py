"""Helpers shared by the demo's tests: the runner's recorded detections of an image, compared with the demo's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optim.demo.core import boxes_json
from optim.evaluation.postprocess import Detections


def frame_file(report, image_id: int):
    """The test-split image behind `image_id` of the report's data set."""
    data = report.parent.parent / "data"
    images = json.loads((data / "annotations" / "instances_test.json").read_text())["images"]
    return data / "test" / next(i["file_name"] for i in images if i["id"] == image_id)


def runner_detections(report, variant: str, image_id: int, threshold: float) -> list[dict]:
    """What the runner recorded for one image, above `threshold`, as the demo's JSON."""
    stored = json.loads((report / "variants" / f"{variant}.json").read_text())["detections"][str(image_id)]
    keep = np.asarray(stored["scores"]) > threshold
    detections = Detections(np.asarray(stored["boxes"], np.float32).reshape(-1, 4)[keep],
                            np.asarray(stored["scores"], np.float32)[keep], np.asarray(stored["labels"])[keep])
    return boxes_json(detections, ["car", "truck", "person", "sign"])


def assert_same_boxes(ours: list[dict], runner: list[dict]) -> None:
    assert [d["label"] for d in ours] == [d["label"] for d in runner]
    for mine, theirs in zip(ours, runner):
        assert mine["score"] == pytest.approx(theirs["score"], abs=2e-3)
        assert mine["box"] == pytest.approx(theirs["box"], abs=0.2)

"""COCO box metrics with pycocotools, and fidelity of a variant's detections to the baseline's."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

from optim.evaluation.postprocess import Detections

METRIC_NAMES = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large"]


def to_coco_results(detections: dict[int, Detections], category_of_label: Sequence[int | None]) -> list[dict]:
    """Detections keyed by image id -> COCO result dicts (xywh boxes, the data set's category ids; see
    `optim.evaluation.label_map`). Detections of a class the data set does not have are left out."""
    results = []
    for image_id, det in detections.items():
        for box, score, label in zip(det.boxes, det.scores, det.labels):
            category = category_of_label[int(label)]
            if category is None:
                continue
            x0, y0, x1, y1 = (float(v) for v in box)
            results.append({"image_id": int(image_id), "category_id": category,
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)})
    return results


def coco_metrics(coco_gt, detections: dict[int, Detections],
                 category_of_label: Sequence[int | None]) -> dict[str, float]:
    """mAP@[.5:.95], mAP@.5, mAP@.75 and AP small/medium/large (-1 where a size has no ground truth)."""
    from pycocotools.cocoeval import COCOeval

    results = to_coco_results(detections, category_of_label)
    if not results:
        return {name: 0.0 for name in METRIC_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.imgIds = sorted(detections)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(METRIC_NAMES, evaluator.stats[:6])}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes a (N, 4) and b (M, 4)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def fidelity(baseline: dict[int, Detections], variant: dict[int, Detections], score_threshold: float = 0.5,
             iou_threshold: float = 0.5) -> float:
    """Share of the baseline's confident detections (score > threshold) that the variant reproduces:
    same label, IoU >= iou_threshold, also above the threshold. 1.0 when the baseline has none."""
    total = matched = 0
    for image_id, base in baseline.items():
        keep = base.scores > score_threshold
        other = variant.get(image_id)
        total += int(keep.sum())
        if other is None or not keep.any():
            continue
        other_keep = other.scores > score_threshold
        ious = box_iou(base.boxes[keep], other.boxes[other_keep])
        same_label = base.labels[keep][:, None] == other.labels[other_keep][None, :]
        matched += int(((ious >= iou_threshold) & same_label).any(axis=1).sum())
    return matched / total if total else 1.0

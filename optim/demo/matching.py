"""Which detections two variants disagree on: a detection is matched when the other variant has one of the
same class with IoU >= 0.5 (greedy, highest scores first); the unmatched ones are what differs."""

from __future__ import annotations

import numpy as np

from optim.evaluation.coco_eval import box_iou
from optim.evaluation.postprocess import Detections

IOU_MATCH = 0.5


def unmatched(a: Detections, b: Detections, iou_threshold: float = IOU_MATCH) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (len(a),), (len(b),): True where a detection has no partner in the other set."""
    free_a = np.ones(len(a.scores), dtype=bool)
    free_b = np.ones(len(b.scores), dtype=bool)
    if not len(a.scores) or not len(b.scores):
        return free_a, free_b
    ious = box_iou(a.boxes, b.boxes)
    ious[a.labels[:, None] != b.labels[None, :]] = 0.0
    for i in np.argsort(-a.scores):
        candidates = np.where(free_b & (ious[i] >= iou_threshold))[0]
        if len(candidates):
            j = candidates[np.argmax(ious[i, candidates])]
            free_a[i] = free_b[j] = False
    return free_a, free_b

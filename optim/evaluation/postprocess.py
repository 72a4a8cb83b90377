"""DETR post-processing shared by every engine, so that all of them are scored identically."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detections:
    """Detections of one image: boxes (N, 4) as absolute (x0, y0, x1, y1), scores (N,), labels (N,)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def postprocess(logits: np.ndarray, pred_boxes: np.ndarray, orig_sizes: np.ndarray,
                score_threshold: float = 0.0) -> list[Detections]:
    """Raw DETR outputs -> per-image detections.

    logits: (B, Q, K+1), the last class is "no object"; pred_boxes: (B, Q, 4) as normalized
    (center_x, center_y, w, h); orig_sizes: (B, 2) as (height, width). Each query gives one detection
    with its best real class, as in DETR's own PostProcess (no NMS: DETR's set prediction needs none).
    """
    probs = _softmax(np.asarray(logits, dtype=np.float32))[..., :-1]
    scores = probs.max(axis=-1)
    labels = probs.argmax(axis=-1)
    boxes = np.asarray(pred_boxes, dtype=np.float32)
    cx, cy, w, h = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
    results = []
    for i, (height, width) in enumerate(np.asarray(orig_sizes)):
        scaled = xyxy[i] * np.array([width, height, width, height], dtype=np.float32)
        keep = scores[i] > score_threshold
        results.append(Detections(scaled[keep], scores[i][keep], labels[i][keep]))
    return results

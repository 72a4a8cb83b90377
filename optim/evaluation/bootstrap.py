"""Bootstrap confidence intervals for COCO mAP over images, without re-running pycocotools per resample.

COCOeval.evaluate() matches detections to ground truth image by image (its `evalImgs`); only accumulate()
pools images. A resample of images with replacement is therefore a weight per image (how often it was drawn):
pooling with weights gives the same precision/recall curve pycocotools draws for a data set holding each
image that many times (checked against COCOeval by tests/test_intervals.py). So one evaluate() per variant,
then a cheap weighted accumulate per resample. Paired intervals come from drawing the same image resamples
for two variants (same seed, same image ids).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from optim.evaluation.coco_eval import to_coco_results
from optim.evaluation.postprocess import Detections

RESAMPLES = 1000
CONFIDENCE = 0.95


@dataclass
class CategoryMatches:
    """One category's detections pooled over images, in pycocotools' order (score descending, stable).

    image: (D,) index of each detection's image; matched / ignored: (T, D) per IoU threshold;
    positives: (I,) non-ignored ground truth per image."""

    image: np.ndarray
    matched: np.ndarray
    ignored: np.ndarray
    positives: np.ndarray


@dataclass
class PerImageEval:
    """What mAP@[.5:.95] (area all, 100 detections) needs from COCOeval.evaluate(), per category."""

    image_ids: list[int]
    categories: list[CategoryMatches]
    recall_thresholds: np.ndarray

    def map(self, weights: np.ndarray | None = None) -> float:
        """mAP with each image counted `weights[i]` times (None: once), as COCOeval.accumulate/summarize."""
        weights = np.ones(len(self.image_ids)) if weights is None else np.asarray(weights, float)
        precisions = [p for c in self.categories if (p := _category_precision(c, weights, self.recall_thresholds))
                      is not None]
        if not precisions:
            return -1.0
        stacked = np.concatenate(precisions)
        return float(stacked.mean())


def _category_precision(cat: CategoryMatches, weights: np.ndarray, recall_thresholds: np.ndarray) -> np.ndarray | None:
    """Interpolated precision at every IoU x recall threshold (flattened), or None without ground truth."""
    positives = float(weights @ cat.positives)
    if positives == 0:
        return None
    w = weights[cat.image]
    keep = w > 0
    if not keep.any():
        return np.zeros(cat.matched.shape[0] * len(recall_thresholds))
    w = w[keep]
    matched, ignored = cat.matched[:, keep], cat.ignored[:, keep]
    tp = np.cumsum((matched & ~ignored) * w, axis=1)
    fp = np.cumsum((~matched & ~ignored) * w, axis=1)
    recall = tp / positives
    precision = tp / (tp + fp + np.spacing(1))
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # COCO's envelope
    out = np.zeros((matched.shape[0], len(recall_thresholds)))
    for t in range(matched.shape[0]):
        index = np.searchsorted(recall[t], recall_thresholds, side="left")
        valid = index < recall.shape[1]
        out[t, valid] = precision[t, index[valid]]
    return out.ravel()


def per_image_eval(coco_gt, detections: dict[int, Detections], category_of_label: Sequence[int | None]) -> PerImageEval:
    """Run COCOeval.evaluate() once and keep its per-image matches for area 'all' at 100 detections."""
    from pycocotools.cocoeval import COCOeval

    image_ids = sorted(detections)
    results = to_coco_results(detections, category_of_label)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(results) if results else None
        evaluator = COCOeval(coco_gt, coco_dt or coco_gt.loadRes([_placeholder(coco_gt, image_ids)]), "bbox")
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
    params = evaluator.params
    max_det = params.maxDets[-1]
    position = {image_id: i for i, image_id in enumerate(params.imgIds)}
    per_category: dict[int, list[dict]] = {}
    for entry in evaluator.evalImgs:
        if entry is not None and entry["aRng"] == params.areaRng[0] and entry["maxDet"] == max_det:
            per_category.setdefault(entry["category_id"], []).append(entry)
    categories = [_pool(per_category.get(cat, []), position, len(params.iouThrs), max_det, bool(results))
                  for cat in params.catIds]
    return PerImageEval([int(i) for i in params.imgIds], categories, np.asarray(params.recThrs))


def _placeholder(coco_gt, image_ids: list[int]) -> dict:
    """loadRes refuses an empty list: one detection of zero score that _pool then drops."""
    return {"image_id": image_ids[0], "category_id": coco_gt.getCatIds()[0], "bbox": [0, 0, 1, 1], "score": 0.0}


def _pool(entries: list[dict], position: dict[int, int], thresholds: int, max_det: int, real: bool) -> CategoryMatches:
    """Concatenate one category's per-image matches in image order, then sort by score as accumulate() does."""
    positives = np.zeros(len(position))
    scores, images, matched, ignored = [], [], [], []
    for entry in entries:
        index = position[entry["image_id"]]
        positives[index] = np.count_nonzero(np.asarray(entry["gtIgnore"]) == 0)
        if not real:
            continue
        count = len(entry["dtScores"][:max_det])
        scores.append(np.asarray(entry["dtScores"][:max_det], float))
        images.append(np.full(count, index))
        matched.append(np.asarray(entry["dtMatches"])[:, :count] != 0)
        ignored.append(np.asarray(entry["dtIgnore"])[:, :count].astype(bool))
    if not scores:
        empty = np.zeros((thresholds, 0), bool)
        return CategoryMatches(np.zeros(0, int), empty, empty, positives)
    order = np.argsort(-np.concatenate(scores), kind="mergesort")
    return CategoryMatches(np.concatenate(images)[order], np.concatenate(matched, axis=1)[:, order],
                           np.concatenate(ignored, axis=1)[:, order], positives)


def resample_weights(images: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples, images) draw counts: each row draws `images` images with replacement. The same seed and
    image count give the same rows, which is what pairs two variants' resamples."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, images, size=(resamples, images))
    return np.stack([np.bincount(row, minlength=images) for row in draws])


def bootstrap_maps(evaluation: PerImageEval, weights: np.ndarray) -> np.ndarray:
    """mAP of every resample (rows of `weights`)."""
    return np.array([evaluation.map(row) for row in weights])


def interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of bootstrap samples."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(np.asarray(samples, float), [tail, 100 - tail])
    return float(low), float(high)

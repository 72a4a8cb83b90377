"""Accuracy when labels arrive late: the detections of recent frames are kept until their ground truth comes
back; the labelled frames of a rolling window are scored with pycocotools (the runner's evaluator) and a
bootstrap over clips (frames of one clip are correlated) gives a confidence interval for the mAP.

The bootstrap evaluates each image once and re-accumulates COCOeval's per-image results for each resample."""

from __future__ import annotations

import contextlib
import io
import logging
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass

import numpy as np

from optim.data.synthetic import CATEGORIES
from optim.evaluation.coco_eval import to_coco_results
from optim.evaluation.postprocess import Detections

LOG = logging.getLogger("optim.monitor")


@dataclass
class Labelled:
    frame: int
    clip: int
    height: int
    width: int
    annotations: list[tuple[int, list[float]]]
    detections: Detections


@dataclass
class AccuracyPoint:
    frame: int
    labelled: int
    map: float
    low: float
    high: float


def _map_of(evaluator) -> float:
    """mAP@[.5:.95], all areas, 100 detections: COCOeval's stats[0] without its printing."""
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else 0.0


def map_with_ci(items: list[Labelled], category_of_label, boot: int = 200, level: float = 0.95,
                seed: int = 0) -> tuple[float, float, float]:
    """(mAP, lower, upper) of `items`: pycocotools' mAP and a percentile bootstrap over clips."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images = [{"id": i + 1, "height": it.height, "width": it.width} for i, it in enumerate(items)]
    annotations = [{"id": n + 1, "image_id": image_id, "category_id": category, "bbox": box,
                    "area": box[2] * box[3], "iscrowd": 0}
                   for n, (image_id, category, box) in enumerate(
                       (i + 1, c, b) for i, it in enumerate(items) for c, b in it.annotations)]
    results = to_coco_results({i + 1: it.detections for i, it in enumerate(items)}, category_of_label)
    if not results or not annotations:
        return 0.0, 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations, "categories": CATEGORIES}
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.params.imgIds = [image["id"] for image in images]
        evaluator.evaluate()
        evaluator.accumulate()
        estimate = _map_of(evaluator)
        original = evaluator.evalImgs
        n_images, n_areas = len(images), len(evaluator.params.areaRng)
        n_cats = len(evaluator.params.catIds)
        by_clip: dict[int, list[int]] = {}
        for position, item in enumerate(items):
            by_clip.setdefault(item.clip, []).append(position)
        clips = list(by_clip.values())
        rng = np.random.default_rng(seed)
        params = evaluator.params  # the resamples accumulate only what the mAP needs: all areas, 100 detections
        params.areaRng, params.areaRngLbl, params.maxDets = params.areaRng[:1], params.areaRngLbl[:1], [100]
        values = []
        for _ in range(boot):
            positions = [p for c in rng.integers(0, len(clips), len(clips)) for p in clips[c]]
            evaluator.evalImgs = [original[k * n_areas * n_images + a * n_images + p]
                                  for k in range(n_cats) for a in range(n_areas) for p in positions]
            params.imgIds = evaluator._paramsEval.imgIds = list(range(len(positions)))
            evaluator.accumulate()
            values.append(_map_of(evaluator))
    tail = (1 - level) / 2 * 100
    return estimate, float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


class RollingAccuracy:
    """`record` each frame's detections; `label` a frame when its ground truth arrives. Every `every` labels
    (once `window` frames are labelled) returns an AccuracyPoint over the last `window` labelled frames."""

    def __init__(self, category_of_label, measured_map: float, window: int = 200, every: int = 50,
                 boot: int = 200, pending: int = 5000, metrics=None):
        self.category_of_label = category_of_label
        self.measured_map = measured_map
        self.window, self.every, self.boot, self.pending_limit = window, every, boot, pending
        self.metrics = metrics
        self.pending: OrderedDict[int, tuple[int, int, int, Detections]] = OrderedDict()
        self.labelled: deque[Labelled] = deque(maxlen=window)
        self.count = 0
        self.refused: Counter[str] = Counter()

    def record(self, frame: int, clip: int, height: int, width: int, detections: Detections) -> None:
        keep = detections.scores > 0.0  # the runner's post-processing threshold
        self.pending[frame] = (clip, height, width,
                               Detections(detections.boxes[keep], detections.scores[keep], detections.labels[keep]))
        while len(self.pending) > self.pending_limit:
            self.pending.popitem(last=False)

    def label(self, frame: int, annotations) -> AccuracyPoint | None:
        """Ground truth for `frame`: [(category_id, [x, y, w, h]), ...]. An unknown frame or a malformed label is
        counted and logged, and returns None."""
        if frame not in self.pending:
            return self._refuse("unknown_frame", f"a label for frame {frame}, which has no recorded detections "
                                                 "(never seen, or older than the pending limit)")
        try:
            clean = [(int(c), [float(v) for v in box]) for c, box in annotations]
            if any(len(box) != 4 or box[2] < 0 or box[3] < 0 for _, box in clean):
                raise ValueError("a box is not [x, y, w, h] with w, h >= 0")
        except (TypeError, ValueError) as error:
            return self._refuse("bad_label", f"the label of frame {frame} is malformed ({error})")
        clip, height, width, detections = self.pending.pop(frame)
        self.labelled.append(Labelled(frame, clip, height, width, clean, detections))
        self.count += 1
        if self.metrics is not None:
            self.metrics.count_labelled()
        if len(self.labelled) < self.window or self.count % self.every:
            return None
        estimate, low, high = map_with_ci(list(self.labelled), self.category_of_label, self.boot, seed=self.count)
        if self.metrics is not None:
            self.metrics.set_accuracy(estimate, low, high, self.measured_map)
        return AccuracyPoint(frame, self.count, estimate, low, high)

    def _refuse(self, cause: str, message: str) -> None:
        LOG.warning("refused label (%s): %s", cause, message)
        self.refused[cause] += 1
        if self.metrics is not None:
            self.metrics.count_error(cause)

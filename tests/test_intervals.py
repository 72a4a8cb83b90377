"""Confidence intervals: the weighted re-pooling of per-image matches equals pycocotools on the resampled data
set (subsets and duplicated images), paired deltas, order-statistic latency intervals and their coverage."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from optim.evaluation.bootstrap import bootstrap_maps, interval, per_image_eval, resample_weights
from optim.evaluation.coco_eval import coco_metrics
from optim.evaluation.postprocess import Detections
from optim.intervals import attach_intervals, overlap, quantile_interval, ratio_interval

CATEGORIES = [1, 2, 3]


def _scene(rng, images: int) -> tuple[list[dict], dict[int, Detections]]:
    """Ground-truth boxes per image and noisy detections of them plus false positives (labels 0..2)."""
    annotations, detections = [], {}
    for image_id in range(1, images + 1):
        count = int(rng.integers(0, 5))
        xy = rng.uniform(0, 80, (count, 2))
        wh = rng.uniform(8, 40, (count, 2))
        labels = rng.integers(0, 3, count)
        for (x, y), (w, h), label in zip(xy, wh, labels):
            annotations.append({"image_id": image_id, "category_id": CATEGORIES[label], "bbox": [x, y, w, h],
                                "area": float(w * h), "iscrowd": 0})
        noisy = np.concatenate([xy + rng.normal(0, 3, xy.shape), xy + wh + rng.normal(0, 3, xy.shape)], axis=1)
        extra = int(rng.integers(0, 4))
        fp_xy = rng.uniform(0, 80, (extra, 2))
        boxes = np.concatenate([noisy, np.concatenate([fp_xy, fp_xy + 20], axis=1)]).astype(np.float32)
        detections[image_id] = Detections(boxes.reshape(-1, 4), rng.uniform(0, 1, count + extra).astype(np.float32),
                                          np.concatenate([labels, rng.integers(0, 3, extra)]).astype(np.int64))
    return annotations, detections


def _coco(annotations: list[dict], image_ids):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"images": [{"id": i, "width": 120, "height": 120} for i in image_ids],
                    "annotations": [{**a, "id": k + 1} for k, a in enumerate(annotations)],
                    "categories": [{"id": c, "name": str(c)} for c in CATEGORIES]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


@pytest.fixture(scope="module")
def scene():
    annotations, detections = _scene(np.random.default_rng(3), 40)
    return annotations, detections, _coco(annotations, detections)


def test_weighted_pooling_matches_pycocotools(scene):
    annotations, detections, coco = scene
    evaluation = per_image_eval(coco, detections, CATEGORIES)
    assert evaluation.map() == pytest.approx(coco_metrics(coco, detections, CATEGORIES)["map"], abs=1e-12)

    subset = sorted(detections)[::3]  # a 0/1 resample: pycocotools on those images only
    weights = np.isin(evaluation.image_ids, subset).astype(float)
    expected = coco_metrics(coco, {i: detections[i] for i in subset}, CATEGORIES)["map"]
    assert evaluation.map(weights) == pytest.approx(expected, abs=1e-12)

    # images drawn twice: pycocotools on a data set holding copies of them under new ids
    twice = sorted(detections)[:15]
    copies = {i: 1000 + i for i in twice}
    duplicated = annotations + [{**a, "image_id": copies[a["image_id"]]} for a in annotations if a["image_id"] in copies]
    dup_detections = {**detections, **{copies[i]: detections[i] for i in twice}}
    expected = coco_metrics(_coco(duplicated, dup_detections), dup_detections, CATEGORIES)["map"]
    weights = np.where(np.isin(evaluation.image_ids, twice), 2.0, 1.0)
    assert evaluation.map(weights) == pytest.approx(expected, abs=1e-3)  # score ties may order copies differently


def test_bootstrap_interval_brackets_map_and_pairs_resamples(scene):
    _, detections, coco = scene
    evaluation = per_image_eval(coco, detections, CATEGORIES)
    weights = resample_weights(len(evaluation.image_ids), 200, seed=0)
    assert np.array_equal(weights, resample_weights(len(evaluation.image_ids), 200, seed=0))
    assert (weights.sum(axis=1) == len(evaluation.image_ids)).all()
    maps = bootstrap_maps(evaluation, weights)
    low, high = interval(maps)
    assert low < evaluation.map() < high and high - low > 0.01

    worse = {i: Detections(d.boxes + 4, d.scores, d.labels) for i, d in detections.items()}
    delta = bootstrap_maps(per_image_eval(coco, worse, CATEGORIES), weights) - maps
    assert interval(delta)[1] < 0  # a shift of every box costs mAP on (almost) every resample
    assert interval(maps - maps) == (0.0, 0.0)


def test_quantile_interval_covers_the_true_median():
    rng = np.random.default_rng(0)
    true_median = np.log(2)  # exponential(1)
    hits = sum(low <= true_median <= high for low, high in
               (quantile_interval(rng.exponential(1, 60), 0.5) for _ in range(400)))
    assert 0.90 <= hits / 400 <= 0.995
    narrow, wide = quantile_interval(rng.exponential(1, 2000), 0.5), quantile_interval(rng.exponential(1, 50), 0.5)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    assert quantile_interval([1.0], 0.5) is None


def test_ratio_interval_and_overlap():
    rng = np.random.default_rng(1)
    slow, fast = rng.normal(20, 1, 200), rng.normal(10, 0.5, 200)
    low, high = ratio_interval(slow, fast, seed=0)
    assert low < np.median(slow) / np.median(fast) < high and low > 1.8
    assert overlap([1, 2], [1.5, 3]) and not overlap([1, 2], [2.5, 3]) and overlap(None, [1, 2]) is None


def test_attach_intervals_to_records(scene):
    _, detections, coco = scene
    rng = np.random.default_rng(2)
    evaluations = {"base": per_image_eval(coco, detections, CATEGORIES)}
    evaluations["same"] = evaluations["base"]
    records = [{"name": name, "status": "ok", "latency": {"1": {"samples_ms": list(rng.normal(mean, 0.3, 50))}}}
               for name, mean in (("base", 10.0), ("same", 5.0))] + [{"name": "broken", "status": "failed"}]
    method = attach_intervals(records, "base", lambda r: evaluations[r["name"]], seed=0, resamples=100)
    assert method == {"confidence": 0.95, "resamples": 100, "seed": 0, "images": 40}
    base, same, broken = records
    assert base["intervals"]["map"][0] < evaluations["base"].map() < base["intervals"]["map"][1]
    assert same["intervals"]["map_delta"] == [0.0, 0.0]
    assert 1.8 < same["intervals"]["speedup"]["1"][0] < 2 < same["intervals"]["speedup"]["1"][1] < 2.2
    low, high = same["latency"]["1"]["p50_ci_ms"]
    assert low < np.median(same["latency"]["1"]["samples_ms"]) < high
    assert "intervals" not in broken


def test_report_shows_intervals_and_ties():
    from optim.report.html import render_report
    from optim.report.tables import _rows

    def variant(name, map_, delta, p50, p50_ci, speedup):
        return {"name": name, "status": "ok", "engine": "openvino", "precision": "int8", "accuracy": {"map": map_},
                "latency": {"1": {"p50_ms": p50, "p50_ci_ms": p50_ci, "p99_ms": p50 * 2}},
                "intervals": {"map": [map_ - 0.02, map_ + 0.02], "map_delta": delta, "speedup": {"1": speedup}}}

    results = {"baseline": "base", "variants": [
        variant("base", 0.577, [0.0, 0.0], 10.0, [9.5, 10.5], [0.95, 1.05]),
        variant("same", 0.575, [-0.006, 0.002], 5.0, [4.8, 5.2], [1.9, 2.1]),
        variant("worse", 0.55, [-0.04, -0.02], 4.9, [4.7, 5.1], [1.95, 2.2])]}
    page = render_report(results)
    assert "57.7 <small class=\"muted\">[55.7, 59.7]</small>" in page
    assert "[−0.6, +0.2] n.d." in page and "[−4.0, −2.0]</small>" in page  # only the first holds 0
    assert "p50: worse ≈ same." in page  # overlapping p50 intervals: not ranked
    assert '"p50_ci": [4.8, 5.2]' in page and '"map_ci": [' in page  # the chart's error bars
    row = next(r for r in _rows(results) if r["variant"] == "worse")
    assert (row["delta_map_ci_low"], row["delta_map_ci_high"]) == (-4.0, -2.0) and row["p50_ci_low_ms"] == 4.7

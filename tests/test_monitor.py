"""optim.monitor in-process: the metrics served on a real loopback /metrics endpoint, drift tests on real
detector statistics (the shipped synth-detr on ONNX Runtime), rolling mAP equal to the runner's evaluator, bad
input counted and logged, and the replay CLI on short clips."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from optim.data.synthetic import CATEGORIES
from optim.errors import OptimError
from optim.evaluation.coco_eval import coco_metrics
from optim.evaluation.postprocess import Detections
from optim.monitor.accuracy import Labelled, RollingAccuracy, map_with_ci
from optim.monitor.drift import DriftConfig, DriftMonitor, p_values
from optim.monitor.metrics import DetectorMetrics, Identity, start_metrics_server
from optim.monitor.pipeline import BadInput
from optim.monitor.replay import ReplayConfig, build_reference
from optim.monitor.stats import frame_stats
from optim.monitor.stream import parse_schedule, synthetic_stream
from optim.monitor.targets import InProcess
from optim.serving.launch import free_port
from optim.serving.options import ServingOptions
from optim.serving.repository import deploy_variant

CONFIG = ReplayConfig(drift=DriftConfig(window=24, check_every=4))


@pytest.fixture(scope="module")
def repository(served_report, tmp_path_factory):
    out = tmp_path_factory.mktemp("monitor") / "repo"
    return out, deploy_variant(served_report, "onnxruntime-fp32", out, ServingOptions())


@pytest.fixture(scope="module")
def target(repository):
    return InProcess(repository[0], repository[1], threads=1)


@pytest.fixture(scope="module")
def reference(target):
    return build_reference(target, 80, CONFIG)


def _families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_metrics_endpoint_serves_the_pipelines_metrics(repository, target):
    port = free_port()
    server = start_metrics_server(target.metrics, port)
    try:
        for frame in synthetic_stream(6, seed=5):
            target.detect(frame.encoded())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            families = _families(response.read().decode())
    finally:
        server.shutdown()
    identity = Identity.of_repository(repository[0])
    request = families["optim_request_duration_seconds"]
    count = next(s for s in request.samples if s.name.endswith("_count"))
    assert count.labels == {"variant": "onnxruntime-fp32", "manifest_hash": identity.manifest_hash}
    assert count.value >= 6
    stages = {s.labels["stage"] for s in families["optim_stage_duration_seconds"].samples}
    assert stages == {"decode", "preprocess", "inference", "postprocess"}
    for name in ("optim_batch_size", "optim_detections_per_image", "optim_detection_confidence",
                 "optim_detection_box_size_ratio", "optim_detections", "optim_errors", "optim_images"):
        assert name in families, name
    assert {s.name for s in families["optim_images"].samples} >= {"optim_images_total"}
    confidences = [s.value for s in families["optim_detection_confidence"].samples if s.name.endswith("_count")]
    assert confidences[0] > 0  # the shipped model finds objects in these frames


def test_a_busy_metrics_port_is_a_clear_error(target):
    port = free_port()
    server = start_metrics_server(target.metrics, port)
    try:
        with pytest.raises(OptimError, match="--monitor-port"):
            start_metrics_server(target.metrics, port)
    finally:
        server.shutdown()


def test_bad_input_is_counted_and_logged_not_fatal(target, caplog):
    labels = {"variant": "onnxruntime-fp32", "manifest_hash": target.metrics.identity.manifest_hash, "cause": "decode"}
    before = target.metrics.registry.get_sample_value("optim_errors_total", labels)
    with pytest.raises(BadInput, match="not a decodable image"):
        target.pipeline.run([b"not an image"])
    assert target.metrics.registry.get_sample_value("optim_errors_total", labels) == before + 1
    assert "refused input (decode)" in caplog.text
    detections, _ = target.detect(next(synthetic_stream(1, seed=9)).encoded())  # still serving
    assert len(detections.scores) > 0


def test_drift_tests_accept_the_same_data_and_reject_dark_frames(target, reference):
    same = [frame_stats(f.image, target.detect(f.encoded())[0])
            for f in synthetic_stream(24 * 8, seed=21) if f.index % 8 == 0]
    dark = [frame_stats(f.image, target.detect(f.encoded())[0])
            for f in synthetic_stream(24 * 8, seed=21, schedule=parse_schedule("dark:0-192")) if f.index % 8 == 0]
    alpha = CONFIG.drift.per_test_alpha
    assert min(p_values(reference.samples, same).values()) > alpha
    shifted = p_values(reference.samples, dark)
    assert shifted["brightness"] < alpha and shifted["contrast"] < alpha


def test_drift_monitor_checks_on_schedule(reference):
    monitor = DriftMonitor(reference, CONFIG.drift)
    checks = [monitor.add(reference.samples[i % 80], frame=i * 4) for i in range(24 * 2 + 8)]
    ran = [c for c in checks if c is not None]
    # one frame in 8 sampled (every other call here); full window after 24 samples, then one check per 4 samples
    assert [c.frame for c in ran] == [184, 216]
    assert not any(c.alert for c in ran)


def test_rolling_map_equals_the_runners_evaluator(target):
    items = []
    for frame in synthetic_stream(48, seed=33):
        detections, _ = target.detect(frame.encoded())
        keep = detections.scores > 0
        items.append(Labelled(frame.index, frame.clip, 128, 128, frame.annotations,
                              Detections(detections.boxes[keep], detections.scores[keep], detections.labels[keep])))
    label_map = [1, 2, 3, 4]
    estimate, low, high = map_with_ci(items, label_map, boot=50)
    from pycocotools.coco import COCO

    gt = COCO()
    gt.dataset = {"images": [{"id": i + 1, "height": 128, "width": 128} for i in range(len(items))],
                  "annotations": [{"id": n + 1, "image_id": i + 1, "category_id": c, "bbox": b, "area": b[2] * b[3],
                                   "iscrowd": 0} for n, (i, c, b) in enumerate(
                                       (i, c, b) for i, it in enumerate(items) for c, b in it.annotations)],
                  "categories": CATEGORIES}
    gt.createIndex()
    runner = coco_metrics(gt, {i + 1: it.detections for i, it in enumerate(items)}, label_map)
    assert estimate == pytest.approx(runner["map"], abs=1e-9)
    assert 0 < low <= estimate <= high < 1


def test_late_labels_for_unknown_frames_are_counted(caplog):
    metrics = DetectorMetrics(Identity("v", "abc"), {0: "car"})
    rolling = RollingAccuracy([1, 2, 3, 4], 0.5, window=2, every=1, metrics=metrics)
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    rolling.record(7, 0, 128, 128, empty)
    assert rolling.label(99, [(1, [0, 0, 5, 5])]) is None
    assert rolling.label(7, [(1, [0, 0, "wide", 5])]) is None
    assert rolling.refused == {"unknown_frame": 1, "bad_label": 1} and 7 in rolling.pending
    assert "refused label (unknown_frame)" in caplog.text
    families = _families(metrics.exposition())
    counts = {s.labels["cause"]: s.value for s in families["optim_errors"].samples if s.name == "optim_errors_total"}
    assert counts["unknown_frame"] == 1 and counts["bad_label"] == 1


def test_replay_cli_alerts_on_a_shift_and_writes_the_report(repository, reference, tmp_path):
    repo = repository[0]
    reference.save(tmp_path / "reference.json")
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, "-m", "optim.monitor", "replay", str(repo), "--frames", "360",
                             "--shifts", "dark:120-360", "--reference", str(tmp_path / "reference.json"),
                             "--inject-bad", "--boot", "50", "--accuracy-window", "100", "--threads", "1", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    log = json.loads((out / "replay.json").read_text())
    assert log["errors"] == {"decode": 1, "unknown_frame": 1, "bad_label": 1}
    (row,) = log["detection"]
    assert row["kind"] == "dark" and row["within_target"], log["alerts"]
    assert not [a for a in log["alerts"] if a["kind"] == "drift" and a["frame"] < 120]
    assert log["latency"] and log["accuracy"]
    page = (out / "replay.html").read_text()
    assert page.count("<svg") == 3 and 'class="shift"' in page and 'class="alert"' in page
    assert "http://" not in page and "https://" not in page  # self-contained


def test_replay_cli_refuses_a_bad_schedule(repository):
    result = subprocess.run([sys.executable, "-m", "optim.monitor", "replay", str(repository[0]), "--shifts",
                             "fog:10-20"], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2 and "--shifts" in result.stderr and "Traceback" not in result.stderr


def test_scene_shifts_change_object_size_and_class_mix():
    from optim.monitor.stream import SCENE_SHIFTS

    def objects(schedule):
        return [a for f in synthetic_stream(400, seed=4, schedule=parse_schedule(schedule)) for a in f.annotations]

    plain, small, people = objects(""), objects("small_objects:0-400"), objects("class_mix:0-400")
    assert np.median([b[2] * b[3] for _, b in small]) < 0.5 * np.median([b[2] * b[3] for _, b in plain])
    assert np.mean([c == 3 for c, _ in people]) > 0.7 > np.mean([c == 3 for c, _ in plain])
    assert SCENE_SHIFTS["class_mix"].class_weights[2] == 0.85


@pytest.mark.parametrize("kind,statistic,direction", [("dark", "brightness", -1), ("noise", "sharpness", 1),
                                                      ("blur", "sharpness", -1), ("shake", "sharpness", -1)])
def test_pixel_shifts_move_the_input_statistic_they_should(kind, statistic, direction):
    from optim.monitor.stats import input_stats

    def mean(schedule):
        return np.mean([input_stats(f.image)[statistic] for f in synthetic_stream(48, 6, parse_schedule(schedule))])

    assert (mean(f"{kind}:0-48") - mean("")) * direction > 0


def test_overhead_measures_both_sides_interleaved(repository, reference):
    from optim.monitor.overhead import measure_overhead

    result = measure_overhead(repository[0], repository[1], reference, rounds=40, threads=1)
    assert result["rounds"] == 40
    assert 0 < result["without"]["p50_ms"] <= result["without"]["p99_ms"]
    assert 0 < result["with"]["p50_ms"] <= result["with"]["p99_ms"]
    assert result["paired_overhead"] == pytest.approx(result["paired_median_overhead_ms"] / result["without"]["p50_ms"])

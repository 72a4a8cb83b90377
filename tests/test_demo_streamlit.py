"""The Streamlit app under Streamlit's own AppTest (the script run in-process, widgets set, outputs read): it
starts on the shipped model with nothing given, runs a report's variants on an upload with the runner's
detections, shows bad uploads as st.error (no exception), and runs the side-by-side video."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from demo_helpers import assert_same_boxes, frame_file, runner_detections

APP = str(Path(__file__).resolve().parents[1] / "optim" / "demo" / "streamlit_app.py")


def _app(monkeypatch, *args: str):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(sys, "argv", [APP, *args])  # what `streamlit run APP -- ARGS` gives the script
    return AppTest.from_file(APP, default_timeout=180)


def test_starts_on_the_shipped_model(monkeypatch):
    app = _app(monkeypatch).run()
    assert not app.exception and not app.error
    assert app.selectbox(key="detector").value == "synth-detr (PyTorch FP32)"
    assert len(app.image) == 1
    boxes = json.loads(app.json[0].value)["synth-detr (PyTorch FP32)"]
    assert boxes and {"label", "class_id", "score", "box"} <= set(boxes[0])


@pytest.mark.slow
def test_report_variant_on_an_upload_and_bad_uploads(monkeypatch, demo_report):
    app = _app(monkeypatch, "--report", str(demo_report), "--variant", "openvino-int8").run()
    assert not app.exception and not app.error
    assert app.selectbox(key="compare").value == "(none: one detector)"  # no --compare: one detector
    app.slider(key="threshold").set_value(0.3)
    path = frame_file(demo_report, 5)
    app.file_uploader[0].set_value((path.name, path.read_bytes(), "image/jpeg")).run()
    assert not app.exception and not app.error
    boxes = json.loads(app.json[0].value)["demo: openvino-int8"]
    assert_same_boxes(boxes, runner_detections(demo_report, "openvino-int8", 5, 0.3))
    assert any("measured by the report" in m.value for m in app.markdown)

    app.file_uploader[0].set_value(("holiday.jpg", path.read_bytes()[:300], "image/jpeg")).run()
    assert not app.exception
    assert len(app.error) == 1 and app.error[0].value.startswith("holiday.jpg: the image is corrupt or truncated")
    assert "fix: re-export or re-download the image" in app.error[0].value


@pytest.mark.slow
def test_side_by_side_video_of_a_synthetic_clip(monkeypatch, demo_report):
    app = _app(monkeypatch, "--report", str(demo_report), "--variant", "onnxruntime-int8",
               "--compare", "openvino-int8").run()
    app.slider(key="clip_frames").set_value(10)  # frames of the synthetic clip
    app.button[0].click().run()
    assert not app.exception and not app.error
    summary = next(m.value for m in app.markdown if "frames/s end to end" in m.value)
    assert "10 frames in" in summary and "frames where the detections differ" in summary
    assert len(app.dataframe[0].value) == 10


def test_unknown_options_are_reported(monkeypatch):
    app = _app(monkeypatch, "--reprot", "x").run()
    assert not app.exception and "unknown options: --reprot x" in app.error[0].value

"""The demo's core: uploads are checked (clear errors, no traceback), report variants run from the artifacts
the runner built and detect what the runner scored, two variants are compared, and video is written."""

from __future__ import annotations

import io

import numpy as np
import pytest
from demo_helpers import assert_same_boxes, frame_file, runner_detections
from PIL import Image

from optim.demo.core import DemoCore, boxes_json, synthetic_frames
from optim.demo.detector import Choice, load_detector, loadable_variants
from optim.demo.matching import unmatched
from optim.demo.uploads import open_video, read_image
from optim.errors import OptimError
from optim.evaluation.postprocess import Detections


def test_unmatched_pairs_same_class_by_iou():
    a = Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], np.float32),
                   np.array([0.9, 0.8, 0.7], np.float32), np.array([0, 1, 2]))
    b = Detections(np.array([[1, 1, 10, 10], [20, 20, 30, 30], [80, 80, 90, 90]], np.float32),
                   np.array([0.9, 0.8, 0.6], np.float32), np.array([0, 2, 2]))
    only_a, only_b = unmatched(a, b)
    assert only_a.tolist() == [False, True, True]  # the second has another class, the third no overlap
    assert only_b.tolist() == [False, True, True]


def test_bad_uploads_get_clear_errors(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    with pytest.raises(OptimError, match="not an image"):
        read_image(text, "notes.txt")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buffer, format="JPEG")
    with pytest.raises(OptimError, match="corrupt or truncated"):
        read_image(buffer.getvalue()[:200], "cut.jpg")
    huge = io.BytesIO()
    Image.new("1", (9000, 6000)).save(huge, format="PNG")  # 54 megapixels in a few kB
    with pytest.raises(OptimError, match="too large"):
        read_image(huge.getvalue(), "huge.png")
    with pytest.raises(OptimError, match="empty"):
        read_image(b"", "empty.png")
    with pytest.raises(OptimError, match="not a video"):
        open_video(text, "notes.txt")
    with pytest.raises(OptimError, match="empty.mp4: the video has no frames"):
        open_video(_empty_mp4(tmp_path), "empty.mp4")
    with pytest.raises(OptimError, match="sound.wav: the video has no frames"):
        open_video(_audio_only(tmp_path), "sound.wav")
    assert read_image(buffer.getvalue(), "ok.jpg").size == (64, 64)


def _audio_only(tmp_path):
    import av

    path = tmp_path / "sound.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
    return path


def _empty_mp4(tmp_path):
    import av

    path = tmp_path / "empty.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()  # header and stream, never a frame
    return path


@pytest.mark.slow
def test_variants_detect_what_the_runner_scored(demo_report):
    assert loadable_variants(demo_report) == ["pytorch-fp32", "onnxruntime-int8", "openvino-int8"]
    for variant in ("onnxruntime-int8", "openvino-int8", "pytorch-fp32"):
        detector = load_detector(Choice(report=demo_report, variant=variant))
        assert detector.measured["map"] > 0.2 and detector.measured["p50_ms"] > 0
        for image_id in (1, 5):
            image = read_image(frame_file(demo_report, image_id))
            ours = boxes_json(detector.detect(image, 0.3).detections, detector.labels)
            assert ours, "the shipped model finds objects in the test frames"
            assert_same_boxes(ours, runner_detections(demo_report, variant, image_id, 0.3))


@pytest.mark.slow
def test_in_memory_and_unknown_variants_are_refused(demo_report):
    with pytest.raises(OptimError, match="ran on engine 'pytorch' in memory: there is no built artifact"):
        DemoCore.from_options(report=demo_report, variant="pytorch-int8-dynamic")
    with pytest.raises(OptimError, match="choose one of: pytorch-fp32, onnxruntime-int8, openvino-int8"):
        DemoCore.from_options(report=demo_report, variant="nope")
    with pytest.raises(OptimError, match="no results.json"):
        DemoCore.from_options(report=demo_report.parent)


@pytest.mark.slow
def test_side_by_side_video_of_a_synthetic_clip(demo_report, tmp_path):
    from optim.demo.uploads import open_video

    core = DemoCore.from_options(report=demo_report, variant="onnxruntime-int8", compare="openvino-int8", threads=1)
    pair = core.default_pair
    assert pair == ("demo: onnxruntime-int8", "demo: openvino-int8")
    assert core.detector(pair[0]).engine.session.get_session_options().intra_op_num_threads == 1
    assert core.detector(pair[1]).engine.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    outcome = core.annotate_video(list(pair), synthetic_frames(3, 12), 10, 0.5, tmp_path / "out.mp4")
    assert len(outcome.rows) == 12 and all(row[f"{pair[0]} ms"] > 0 for row in outcome.rows)
    _, frames = open_video(tmp_path / "out.mp4")
    decoded = list(frames)
    assert len(decoded) == 12 and decoded[0].width > 2 * 384
    image = core.compare_image(pair, synthetic_frames(3, 1)[0], 0.5)
    assert set(image.boxes) == set(pair) and image.image.width > 2 * 384

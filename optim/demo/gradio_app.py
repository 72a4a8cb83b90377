"""The Gradio demo: `python -m optim.demo.gradio_app [--report reports/int8 --variant V --compare W]`.

Tabs for an image (upload, webcam or the built-in sample), two variants side by side, and video (upload or a
synthetic clip) with an annotated MP4 to download. Every handler calls `optim.demo.core`; user mistakes come
back as a message in the app (gr.Error), never a traceback. The `/detect` and `/compare` endpoints also
return the detections as JSON for API clients (gradio_client)."""

from __future__ import annotations

import html
import os
import tempfile
import time
import uuid
from functools import wraps
from pathlib import Path

from optim.cli import run_cli
from optim.demo.core import DemoCore, input_image, input_video
from optim.demo.options import demo_parser
from optim.demo.uploads import MAX_UPLOAD_BYTES
from optim.errors import MissingExtraError, OptimError

SINGLE = "(none: one detector)"


def _import_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry or version check: offline
    try:
        import gradio
    except ImportError as error:
        raise MissingExtraError("gradio", "demo", "The Gradio demo") from error
    return gradio


def _user_errors(handler):
    """Turn an OptimError into a gr.Error: the app shows its message (escaped: it may quote a file name)."""

    @wraps(handler)
    def wrapped(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except OptimError as error:
            import gradio as gr

            raise gr.Error(html.escape(str(error)), print_exception=False) from error

    return wrapped


def build_app(core: DemoCore):
    """The Blocks app over `core` (not launched)."""
    gr = _import_gradio()
    first, second = core.default_pair
    videos = Path(tempfile.mkdtemp(prefix="optim-demo-"))

    @_user_errors
    def detect(label, upload, webcam, threshold):
        outcome = core.detect_image(label, input_image(upload, Path(upload or '').name, webcam), threshold)
        return outcome.image, outcome.summary, outcome.boxes[label]

    @_user_errors
    def compare(label_a, label_b, upload, webcam, threshold):
        outcome = core.compare_image((label_a, label_b), input_image(upload, Path(upload or '').name, webcam), threshold)
        return outcome.image, outcome.summary, outcome.boxes

    @_user_errors
    def video(label_a, label_b, source, upload, seed, length, threshold, progress=gr.Progress()):  # noqa: B008 -- how Gradio injects it
        frames = input_video(source, upload, Path(upload or "").name, seed, length)
        labels = [label_a] if label_b == SINGLE else [label_a, label_b]
        out = videos / f"annotated-{uuid.uuid4().hex[:12]}.mp4"  # Gradio copies it into its own cache
        outcome = core.annotate_video(labels, frames.frames, frames.fps, threshold, out,
                                      lambda done: progress((done, frames.total), desc="frames", unit="frames"))
        import pandas

        for stale in videos.glob("*.mp4"):  # Gradio has long copied these into its cache
            if time.time() - stale.stat().st_mtime > 600:
                stale.unlink(missing_ok=True)
        return str(outcome.path), str(outcome.path), outcome.summary, pandas.DataFrame(outcome.rows)

    # delete_cache: Gradio drops its copies of uploads and results after an hour (checked hourly).
    with gr.Blocks(title="DETR optimization lab — demo", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown("## DETR optimization lab — see the variants detect\nUpload an image or video, use the webcam, "
                    "or keep the built-in synthetic frame. Boxes show the class name and score.")
        with gr.Tab("Image"):
            with gr.Row():
                with gr.Column():
                    label = gr.Dropdown(core.labels, value=first, label="Detector")
                    upload = gr.File(label="Image file", type="filepath")
                    webcam = gr.Image(sources=["webcam"], type="pil", label="…or the webcam")
                    threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="Score threshold")
                    button = gr.Button("Detect", variant="primary")
                with gr.Column():
                    annotated = gr.Image(type="pil", label="Detections", format="png", elem_id="detections")
                    summary = gr.Markdown()
                    boxes = gr.JSON(label="Detections (JSON)")
            inputs, outputs = [label, upload, webcam, threshold], [annotated, summary, boxes]
            button.click(detect, inputs, outputs, api_name="detect")
            app.load(detect, inputs, outputs, api_visibility="private")
        with gr.Tab("Side by side"):
            with gr.Row():
                label_a = gr.Dropdown(core.labels, value=first, label="Left")
                label_b = gr.Dropdown(core.labels, value=second, label="Right")
            with gr.Row():
                upload2 = gr.File(label="Image file", type="filepath")
                webcam2 = gr.Image(sources=["webcam"], type="pil", label="…or the webcam")
                threshold2 = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="Score threshold")
            button2 = gr.Button("Compare", variant="primary")
            pair = gr.Image(type="pil", label="Side by side (magenta, tagged DIFF: detections the other variant lacks)",
                            format="png", elem_id="side-by-side")
            summary2 = gr.Markdown()
            boxes2 = gr.JSON(label="Detections of each (JSON)")
            button2.click(compare, [label_a, label_b, upload2, webcam2, threshold2], [pair, summary2, boxes2],
                          api_name="compare")
        with gr.Tab("Video"):
            with gr.Row():
                video_a = gr.Dropdown(core.labels, value=first, label="Detector")
                video_b = gr.Dropdown([SINGLE, *core.labels], value=second if second != first else SINGLE,
                                      label="Side by side with")
            with gr.Row():
                source = gr.Radio(["synthetic clip", "upload"], value="synthetic clip", label="Frames from")
                video_file = gr.File(label="Video file (MP4, WebM, MOV, AVI)", type="filepath")
                seed = gr.Number(value=3, precision=0, label="Synthetic clip seed")
                length = gr.Slider(10, 300, value=60, step=10, label="Synthetic clip frames")
                threshold3 = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="Score threshold")
            button3 = gr.Button("Run on every frame", variant="primary")
            with gr.Row():
                player = gr.Video(label="Annotated video")
                download = gr.File(label="Download the annotated MP4")
            summary3 = gr.Markdown()
            table = gr.Dataframe(label="Per-frame engine latency (ms)")
            button3.click(video, [video_a, video_b, source, video_file, seed, length, threshold3],
                          [player, download, summary3, table], api_name="video")
    return app


def main(argv: list[str] | None = None) -> int:
    args = demo_parser("python -m optim.demo.gradio_app").parse_args(argv)
    core = DemoCore.from_options(args.model, args.report, args.variant, args.compare, args.threads)
    core.detector(core.default_pair[0])  # load before serving: the first request is answered at once
    app = build_app(core)
    app.queue(default_concurrency_limit=2)
    app.launch(server_name=args.host, server_port=args.port, max_file_size=MAX_UPLOAD_BYTES, show_error=False)
    return 0


if __name__ == "__main__":
    run_cli(main)

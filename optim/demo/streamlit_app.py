"""The Streamlit demo: `streamlit run optim/demo/streamlit_app.py [-- --report reports/int8 --variant V --compare W]`.

An image (upload, camera or the built-in sample) or a video (upload or a synthetic clip), one detector or two side
by side. The core is built once per process (st.cache_resource) and loads each detector once; every figure
and box comes from `optim.demo.core`. User mistakes are shown with st.error, never as a traceback."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import streamlit as st

from optim.demo.core import DemoCore, input_image, input_video
from optim.demo.options import demo_parser
from optim.errors import OptimError

SINGLE = "(none: one detector)"


@st.cache_resource(show_spinner="Loading the detector…")
def demo_core(model: str, report: Path | None, variant: str | None, compare: str | None,
              threads: int | None) -> DemoCore:
    """One core per process and options; it loads the default detector now and the others on first use."""
    core = DemoCore.from_options(model, report, variant, compare, threads)
    core.detector(core.default_pair[0])
    return core


def image_tab(core: DemoCore, labels: list[str], threshold: float) -> None:
    inputs, output = st.columns([2, 3])
    with inputs:
        upload = st.file_uploader("Image file", key="image_upload")
        camera = st.camera_input("…or take a photo", key="camera")
    with output:
        image = input_image(upload and upload.getvalue(), upload.name if upload else "", camera and camera.getvalue())
        if upload is None and camera is None:
            st.caption("No upload yet: the first frame of a built-in synthetic clip.")
        outcome = (core.detect_image(labels[0], image, threshold) if len(labels) == 1
                   else core.compare_image((labels[0], labels[1]), image, threshold))
        st.image(outcome.image, caption="Detections" if len(labels) == 1 else
                 "Side by side (magenta, tagged DIFF: detections the other variant lacks)")
        st.markdown(outcome.summary)
        with st.expander("Detections (JSON)"):
            st.json(outcome.boxes)


def video_tab(core: DemoCore, labels: list[str], threshold: float) -> None:
    source = st.radio("Frames from", ["synthetic clip", "upload"], horizontal=True)
    upload, seed, length = None, 3, 60
    if source == "upload":
        upload = st.file_uploader("Video file (MP4, WebM, MOV, AVI)", key="video_upload")
    else:
        seed = st.number_input("Synthetic clip seed", value=seed, step=1)
        length = st.slider("Frames", 10, 300, length, step=10, key="clip_frames")
    if not st.button("Run on every frame", type="primary"):
        return
    frames = input_video(source, upload and upload.getvalue(), upload.name if upload else "", seed, length)
    bar = st.progress(0.0, text="frames")
    with tempfile.TemporaryDirectory(prefix="optim-demo-") as folder:
        outcome = core.annotate_video(labels, frames.frames, frames.fps, threshold, Path(folder) / "annotated.mp4",
                                      lambda done: bar.progress(min(done / frames.total, 1.0) if frames.total
                                                                else 0.5, text=f"{done} frames"))
        data = outcome.path.read_bytes()
    bar.progress(1.0, text=f"{len(outcome.rows)} frames")
    st.video(data, format="video/mp4")
    st.download_button("Download the annotated MP4", data, file_name="annotated.mp4", mime="video/mp4")
    st.markdown(outcome.summary)
    st.dataframe(outcome.rows, hide_index=True)


def main() -> None:
    st.set_page_config(page_title="DETR optimization lab — demo", layout="wide")
    st.title("DETR optimization lab — see the variants detect")
    args, unknown = demo_parser("streamlit run optim/demo/streamlit_app.py --").parse_known_args(sys.argv[1:])
    if unknown:
        st.error(f"unknown options: {' '.join(unknown)} (this app takes --model, --report, --variant, --compare, --threads)")
        return
    try:
        core = demo_core(args.model, args.report, args.variant, args.compare, args.threads)
        first, second = core.default_pair
        with st.sidebar:
            label_a = st.selectbox("Detector", core.labels, index=core.labels.index(first), key="detector")
            options = [SINGLE, *core.labels]
            # Side by side from the start only when asked (--compare): loading a second detector delays the page.
            label_b = st.selectbox("Side by side with", options, index=options.index(second) if args.compare else 0,
                                   key="compare")
            threshold = st.slider("Score threshold", 0.05, 0.95, 0.5, step=0.05, key="threshold")
            for label in dict.fromkeys((label_a, label_b)):
                if label != SINGLE:
                    st.markdown(core.detector(label).describe())
        labels = [label_a] if label_b == SINGLE else [label_a, label_b]
    except OptimError as error:
        st.error(str(error))
        return
    image, video = st.tabs(["Image", "Video"])
    for tab, show in ((image, image_tab), (video, video_tab)):
        with tab:
            try:
                show(core, labels, threshold)
            except OptimError as error:  # a bad upload: its message in this tab, the rest of the app intact
                st.error(str(error))


main()

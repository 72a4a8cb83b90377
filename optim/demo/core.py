"""The demo's core, shared by the Gradio and the Streamlit app (they only lay out widgets and call it): which
detectors can be chosen, loading each once per process, and annotating an image, a video or a synthetic clip
with one detector or two side by side (the detections that differ highlighted, each one's latency per frame)."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from optim.data.synthetic import clip_frames
from optim.demo.detector import DEFAULT_MODEL, Choice, Detector, load_detector, loadable_variants
from optim.demo.drawing import draw_detections, side_by_side
from optim.demo.matching import unmatched
from optim.demo.uploads import Source, open_video, read_image
from optim.demo.video import Mp4Writer
from optim.errors import OptimError
from optim.evaluation.postprocess import Detections

SYNTHETIC_FPS = 10.0
SYNTHETIC_SIZE = 128
SAMPLE_SEED = 3  # a clip whose first frame holds a truck and a sign: what the apps show before any upload


@dataclass
class ImageOutcome:
    """An annotated image, its detections as JSON-ready dicts (per detector label) and a Markdown summary."""

    image: Image.Image
    boxes: dict[str, list[dict]]
    summary: str


@dataclass
class VideoOutcome:
    """An annotated MP4 and, per frame, each detector's engine latency (ms) and the count of differing boxes."""

    path: Path
    summary: str
    rows: list[dict] = field(default_factory=list)
    frames_per_second: float = 0.0


def boxes_json(detections: Detections, labels: list[str]) -> list[dict]:
    """Detections as [{label, class_id, score, box: [x0, y0, x1, y1] in image pixels}], most confident first."""
    order = detections.scores.argsort()[::-1]
    return [{"label": labels[int(detections.labels[i])] if int(detections.labels[i]) < len(labels) else str(i),
             "class_id": int(detections.labels[i]), "score": round(float(detections.scores[i]), 4),
             "box": [round(float(v), 2) for v in detections.boxes[i]]} for i in order]


def synthetic_frames(seed: int, frames: int) -> list[Image.Image]:
    """A clip from the lab's built-in synthetic generator (128 x 128, SYNTHETIC_FPS)."""
    if not 1 <= frames <= 600:
        raise OptimError(f"a synthetic clip has 1 to 600 frames, not {frames}", field="frames",
                         fix="choose a length between 1 and 600")
    return clip_frames(seed, frames, SYNTHETIC_SIZE)


class DemoCore:
    """The detectors a demo offers (`labels`), each loaded on first use and kept for the process."""

    def __init__(self, choices: list[Choice], default_pair: tuple[str, str] | None = None):
        self.choices = {choice.label: choice for choice in choices}
        first = choices[0].label
        self.default_pair = default_pair or (first, choices[1].label if len(choices) > 1 else first)
        self._detectors: dict[str, Detector] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_options(cls, model: str = DEFAULT_MODEL, report: Path | None = None, variant: str | None = None,
                     compare: str | None = None, threads: int | None = None) -> DemoCore:
        """The zoo `model` plus every runnable variant of `report`; `variant` / `compare` pick the default pair;
        `threads` is each engine's thread count (None: the engine's default)."""
        zoo = Choice(model=model, threads=threads)
        if report is None:
            if variant or compare:
                raise OptimError("--variant and --compare name variants of a report", field="--report",
                                 fix="add --report reports/<experiment>")
            return cls([zoo])
        names = loadable_variants(Path(report))
        for name in filter(None, (variant, compare)):
            if name not in names:  # loading it raises the reason: unknown, failed, in memory, artifact missing
                load_detector(Choice(report=Path(report), variant=name, threads=threads))
        variants = [Choice(report=Path(report), variant=name, threads=threads) for name in names]
        first = Choice(report=Path(report), variant=variant, threads=threads) if variant else zoo
        second = Choice(report=Path(report), variant=compare, threads=threads) if compare else next(
            (c for c in variants if c != first), first)
        ordered = [first] + [c for c in [zoo, *variants] if c != first]
        return cls(ordered, (first.label, second.label))

    @property
    def labels(self) -> list[str]:
        return list(self.choices)

    def detector(self, label: str) -> Detector:
        """The detector of `label`, loaded once per process."""
        if label not in self.choices:
            raise OptimError(f"unknown detector '{label}'", fix="choose one of: " + ", ".join(self.labels))
        with self._lock:
            if label not in self._detectors:
                self._detectors[label] = load_detector(self.choices[label])
            return self._detectors[label]

    def detect_image(self, label: str, image: Image.Image, threshold: float) -> ImageOutcome:
        """One detector on one image."""
        detector = self.detector(label)
        result = detector.detect(image, threshold)
        summary = (f"{detector.describe()}\n\n{len(result.detections.scores)} detections with score > {threshold:.2f}"
                   f" · this image: {result.infer_ms:.1f} ms in the engine, {result.total_ms:.1f} ms with "
                   "pre- and post-processing")
        return ImageOutcome(draw_detections(image, result.detections, detector.labels),
                            {label: boxes_json(result.detections, detector.labels)}, summary)

    def compare_image(self, labels: tuple[str, str], image: Image.Image, threshold: float) -> ImageOutcome:
        """Two detectors on one image, side by side; detections without a partner in the other are highlighted."""
        (frame, outcome), = self._compare_frames(labels, [image], threshold)
        return ImageOutcome(frame, outcome["boxes"], outcome["summary"])

    def _compare_frames(self, labels: tuple[str, str], frames: Iterable[Image.Image], threshold: float):
        """Yield (composite frame, {boxes, summary, row}) per frame for a detector pair."""
        a, b = self.detector(labels[0]), self.detector(labels[1])
        for index, image in enumerate(frames):
            ra, rb = a.detect(image, threshold), b.detect(image, threshold)
            diff_a, diff_b = unmatched(ra.detections, rb.detections)
            differing = int(diff_a.sum() + diff_b.sum())
            composite = side_by_side(draw_detections(image, ra.detections, a.labels, diff_a),
                                     draw_detections(image, rb.detections, b.labels, diff_b),
                                     (f"{labels[0]}  {ra.infer_ms:.1f} ms", f"{labels[1]}  {rb.infer_ms:.1f} ms"))
            summary = (f"{a.describe()}\n\n{b.describe()}\n\n{differing} detections differ (magenta, tagged DIFF: no "
                       f"partner of the same class with IoU >= 0.5 in the other) · engine latency "
                       f"{ra.infer_ms:.1f} ms vs {rb.infer_ms:.1f} ms")
            row = {"frame": index, labels[0] + " ms": round(ra.infer_ms, 2), labels[1] + " ms": round(rb.infer_ms, 2),
                   "differing": differing}
            yield composite, {"boxes": {labels[0]: boxes_json(ra.detections, a.labels),
                                        labels[1]: boxes_json(rb.detections, b.labels)}, "summary": summary, "row": row}

    def _single_frames(self, label: str, frames: Iterable[Image.Image], threshold: float):
        detector = self.detector(label)
        for index, image in enumerate(frames):
            result = detector.detect(image, threshold)
            row = {"frame": index, label + " ms": round(result.infer_ms, 2), "detections": len(result.detections.scores)}
            yield draw_detections(image, result.detections, detector.labels), {"row": row}

    def annotate_video(self, labels: list[str], frames: Iterable[Image.Image], fps: float, threshold: float,
                       out_path: Path, progress: Callable[[int], None] | None = None) -> VideoOutcome:
        """Run one detector (or two, side by side) frame by frame and write the annotated MP4 to `out_path`;
        `progress(frames done)` is called after each frame."""
        for label in labels:
            self.detector(label)  # load before the clock starts
        stream = (self._single_frames(labels[0], frames, threshold) if len(labels) == 1
                  else self._compare_frames((labels[0], labels[1]), frames, threshold))
        writer = Mp4Writer(out_path, fps)
        rows: list[dict] = []
        start = time.perf_counter()
        try:
            for frame, outcome in stream:
                writer.write(frame)
                rows.append(outcome["row"])
                if progress:
                    progress(len(rows))
        finally:
            writer.close()
        seconds = time.perf_counter() - start
        rate = len(rows) / seconds if seconds > 0 else 0.0
        return VideoOutcome(Path(out_path), self._video_summary(labels, rows, seconds), rows, rate)

    def _video_summary(self, labels: list[str], rows: list[dict], seconds: float) -> str:
        parts = [self.detector(label).describe() for label in labels]
        parts.append(f"{len(rows)} frames in {seconds:.1f} s: {len(rows) / max(seconds, 1e-9):.1f} frames/s end to end"
                     " (detection, drawing and H.264 encoding)")
        for label in labels:
            values = [row[label + " ms"] for row in rows]
            parts.append(f"{label}: engine p50 {statistics.median(values):.1f} ms, max {max(values):.1f} ms per frame")
        if len(labels) == 2:
            changed = sum(1 for row in rows if row["differing"])
            parts.append(f"frames where the detections differ: {changed} of {len(rows)}")
        return "\n\n".join(parts)


def sample_image() -> Image.Image:
    """The image the apps annotate before anything is uploaded: the first frame of a built-in synthetic clip."""
    return synthetic_frames(SAMPLE_SEED, 1)[0]


def input_image(upload: Source | None, name: str, camera: Source | Image.Image | None = None) -> Image.Image:
    """What the apps detect on: the uploaded file, else the camera snapshot, else the built-in sample."""
    if upload is not None:
        return read_image(upload, name)
    if isinstance(camera, Image.Image):
        return camera.convert("RGB")
    return read_image(camera, "camera photo") if camera is not None else sample_image()


@dataclass
class VideoInput:
    """Frames to run (an iterator), their rate, and their count when known in advance (for progress bars)."""

    frames: Iterable[Image.Image]
    fps: float
    total: int | None


def input_video(source: str, upload: Source | None, name: str, seed: int, length: int) -> VideoInput:
    """`source` "upload": the uploaded video (checked); anything else: a synthetic clip of `length` frames."""
    if source != "upload":
        return VideoInput(synthetic_frames(int(seed), int(length)), SYNTHETIC_FPS, int(length))
    if upload is None:
        raise OptimError("no video uploaded", fix="upload a video, or choose the synthetic clip")
    info, frames = open_video(upload, name)
    return VideoInput(frames, info.fps, None)

"""Per-frame statistics the drift tests compare: the input image's (brightness, contrast, sharpness, size) and
the detector's outputs (detections per frame, their confidences, box sizes and classes)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from optim.evaluation.postprocess import Detections
from optim.monitor.metrics import DETECTION_THRESHOLD


@dataclass
class FrameStats:
    """One frame's statistics; the list fields hold one value per detection above DETECTION_THRESHOLD."""

    brightness: float  # mean luma, 0-255
    contrast: float  # standard deviation of luma
    sharpness: float  # log(1 + variance of the 4-neighbour Laplacian of luma)
    image_size: str  # "HxW"
    detections: int
    confidences: list[float]
    box_sizes: list[float]  # sqrt(box area / image area)
    classes: list[int]

    def as_dict(self) -> dict:
        return asdict(self)


def input_stats(image: Image.Image) -> dict:
    """Brightness, contrast, sharpness and size of an RGB image (luma: PIL's ITU-R 601 "L" conversion)."""
    luma = np.asarray(image.convert("L"), dtype=np.float32)
    laplacian = (luma[1:-1, :-2] + luma[1:-1, 2:] + luma[:-2, 1:-1] + luma[2:, 1:-1] - 4 * luma[1:-1, 1:-1])
    return {"brightness": float(luma.mean()), "contrast": float(luma.std()),
            "sharpness": float(np.log1p(laplacian.var())) if laplacian.size else 0.0,
            "image_size": f"{image.height}x{image.width}"}


def output_stats(detections: Detections, height: int, width: int) -> dict:
    """The detections above DETECTION_THRESHOLD: count, confidences, size ratios and classes."""
    keep = detections.scores > DETECTION_THRESHOLD
    boxes = detections.boxes[keep]
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    return {"detections": int(keep.sum()), "confidences": detections.scores[keep].astype(float).tolist(),
            "box_sizes": np.sqrt(areas / float(height * width)).astype(float).tolist(),
            "classes": detections.labels[keep].astype(int).tolist()}


def frame_stats(image: Image.Image, detections: Detections) -> FrameStats:
    return FrameStats(**input_stats(image), **output_stats(detections, image.height, image.width))

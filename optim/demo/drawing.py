"""Draw detections on an image with PIL: one colour per class, the class name and score on each box, and a
thick magenta outline on the detections that differ from another variant's."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from optim.evaluation.postprocess import Detections

PALETTE = [(0, 200, 255), (255, 170, 0), (60, 220, 60), (255, 80, 80), (180, 120, 255), (255, 230, 0),
           (0, 255, 180), (255, 120, 200)]
DIFF_COLOUR = (255, 0, 255)
MIN_SIDE = 384  # small frames (the synthetic ones are 128 px) are enlarged so that labels stay readable


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def display_scale(image: Image.Image) -> int:
    """Integer enlargement that brings the longer side to at least MIN_SIDE pixels."""
    return max(1, math.ceil(MIN_SIDE / max(image.size)))


def draw_detections(image: Image.Image, detections: Detections, labels: list[str],
                    differs: np.ndarray | None = None) -> Image.Image:
    """A copy of `image` (enlarged if small) with every detection drawn; `differs` marks those to highlight."""
    scale = display_scale(image)
    canvas = image.resize((image.width * scale, image.height * scale), Image.BILINEAR) if scale > 1 else image.copy()
    draw = ImageDraw.Draw(canvas)
    font = _font(max(11, canvas.height // 32))
    width = max(2, canvas.height // 200)
    for index in np.argsort(detections.scores):  # most confident drawn last, on top
        label = int(detections.labels[index])
        box = [float(v) * scale for v in detections.boxes[index]]
        highlight = differs is not None and bool(differs[index])
        colour = DIFF_COLOUR if highlight else PALETTE[label % len(PALETTE)]
        draw.rectangle(box, outline=colour, width=width * 2 if highlight else width)
        name = labels[label] if label < len(labels) else f"class {label}"
        text = f"{'DIFF ' if highlight else ''}{name} {float(detections.scores[index]):.2f}"
        left, top, right, bottom = draw.textbbox((box[0], box[1]), text, font=font)
        y = box[1] - (bottom - top) - 2 if box[1] - (bottom - top) - 2 >= 0 else box[1]
        draw.rectangle([box[0], y, box[0] + right - left + 4, y + bottom - top + 2], fill=colour)
        draw.text((box[0] + 2, y - (top - box[1])), text, fill=(0, 0, 0), font=font)
    return canvas


def side_by_side(left: Image.Image, right: Image.Image, captions: tuple[str, str]) -> Image.Image:
    """Two panels next to each other with a caption strip above each; even width and height (for H.264)."""
    font = _font(max(14, left.height // 20))
    strip = font.size + 10
    width = left.width + right.width + 8
    height = max(left.height, right.height) + strip
    canvas = Image.new("RGB", (width + width % 2, height + height % 2), (20, 20, 20))
    draw = ImageDraw.Draw(canvas)
    for x, panel, caption in ((0, left, captions[0]), (left.width + 8, right, captions[1])):
        canvas.paste(panel, (x, strip))
        draw.text((x + 4, 4), caption, fill=(255, 255, 255), font=font)
    return canvas

"""A synthetic video stream (the generator the shipped variants were measured on) with scheduled shifts.

Pixel shifts act on each frame: dark, noise, blur, shake (a random translation and motion blur per frame,
labels moved with it). Scene shifts act on the clips that start inside their window: small_objects (objects
half as large), class_mix (mostly people). `latency` changes no frame: the replay slows the pipeline down."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from optim.data.synthetic import Scene, SplitSpec, render_clip
from optim.errors import OptimError

PIXEL_SHIFTS = ("dark", "noise", "blur", "shake")
SCENE_SHIFTS = {"small_objects": Scene(object_scale=0.5), "class_mix": Scene(class_weights=(0.05, 0.05, 0.85, 0.05))}
SHIFTS = (*PIXEL_SHIFTS, *SCENE_SHIFTS, "latency")
JPEG_QUALITY = 92  # as the data set's files


@dataclass(frozen=True)
class ShiftWindow:
    """Shift `kind` on frames [start, end)."""

    kind: str
    start: int
    end: int

    def covers(self, frame: int) -> bool:
        return self.start <= frame < self.end


def parse_schedule(text: str) -> list[ShiftWindow]:
    """'dark:1000-1400,blur:2000-2400' -> windows (empty text: none)."""
    windows = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = re.fullmatch(r"(\w+):(\d+)-(\d+)", item)
        if not match or match[1] not in SHIFTS or int(match[3]) <= int(match[2]):
            raise OptimError(f"bad shift window {item!r}", field="--shifts",
                             fix=f"write KIND:START-END (END > START), KIND one of {', '.join(SHIFTS)}")
        windows.append(ShiftWindow(match[1], int(match[2]), int(match[3])))
    return windows


def active(schedule: list[ShiftWindow], frame: int) -> str | None:
    return next((w.kind for w in schedule if w.covers(frame)), None)


@dataclass
class StreamFrame:
    index: int
    clip: int
    image: Image.Image
    annotations: list[tuple[int, list[float]]]  # (category_id, [x, y, w, h])
    shift: str | None

    def encoded(self) -> bytes:
        buffer = io.BytesIO()
        self.image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        return buffer.getvalue()


def _shake(image: Image.Image, rng: np.random.Generator, annotations):
    """Translate by up to 8 px and smear along a random direction (a camera shaking on its mount)."""
    dx, dy = (int(v) for v in rng.integers(-8, 9, size=2))
    pixels = np.asarray(image, dtype=np.float32)
    angle = rng.uniform(0, np.pi)
    smear = np.zeros_like(pixels)
    for step in range(-3, 4):
        smear += np.roll(pixels, (round(step * np.sin(angle)) + dy, round(step * np.cos(angle)) + dx), axis=(0, 1))
    size = image.width
    moved = []
    for category, (x, y, w, h) in annotations:
        x0, y0 = max(0.0, x + dx), max(0.0, y + dy)
        x1, y1 = min(float(size), x + w + dx), min(float(size), y + h + dy)
        if x1 - x0 >= 3 and y1 - y0 >= 3:
            moved.append((category, [x0, y0, x1 - x0, y1 - y0]))
    return Image.fromarray(np.clip(smear / 7, 0, 255).astype(np.uint8)), moved


def apply_pixel_shift(kind: str, image: Image.Image, rng: np.random.Generator, annotations):
    """One frame under pixel shift `kind` -> (image, annotations)."""
    if kind == "dark":
        return Image.fromarray((np.asarray(image, dtype=np.float32) * 0.45).astype(np.uint8)), annotations
    if kind == "noise":
        noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 25, size=(image.height, image.width, 3))
        return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), annotations
    if kind == "blur":
        return image.filter(ImageFilter.GaussianBlur(2.0)), annotations
    return _shake(image, rng, annotations)


def synthetic_stream(frames: int, seed: int, schedule: list[ShiftWindow] = (), image_size: int = 128,
                     frames_per_clip: int = 8, max_objects: int = 6) -> Iterator[StreamFrame]:
    """`frames` frames of consecutive synthetic clips, shifted as `schedule` says."""
    rng = np.random.default_rng(seed)
    shift_rng = np.random.default_rng(seed + 1)
    split = SplitSpec(clips=1, frames_per_clip=frames_per_clip, max_objects=max_objects)
    index = clip = 0
    while index < frames:
        scene = SCENE_SHIFTS.get(active(schedule, index), Scene())
        for image, labels in render_clip(rng, image_size, split, scene):
            if index >= frames:
                return
            kind = active(schedule, index)
            if kind in PIXEL_SHIFTS:
                image, labels = apply_pixel_shift(kind, image, shift_rng, labels)
            yield StreamFrame(index, clip, image, labels, kind)
            index += 1
        clip += 1

"""Frame sources: each stream yields encoded (JPEG) frames, so that decoding is real work in the pipeline.

A stream is the shipped synthetic generator's clips (rendered once, encoded to JPEG, looped) or a video file
that Pillow can read frame by frame (animated GIF/WebP/APNG, multi-page TIFF) or a folder of images. Faults can
be injected per stream, to check that the pipeline counts and skips them while the other streams go on:
`end_after` frames (the stream ends early), `stall_at` (the stream stops sending for `stall_seconds`) and
`corrupt_every` (every k-th frame is truncated bytes that fail to decode)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

from optim.errors import OptimError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class Faults:
    """Faults injected into one stream (None = none of that kind)."""

    end_after: int | None = None
    stall_at: int | None = None
    stall_seconds: float = 0.0
    corrupt_every: int | None = None


def encode_jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def synthetic_clip(seed: int, frames: int = 16, size: int = 128) -> list[bytes]:
    """One synthetic street clip (the generator the shipped model was trained on), as JPEG frames."""
    from optim.data.synthetic import SplitSpec, render_clip

    rng = np.random.default_rng(10_000 + seed)
    return [encode_jpeg(image) for image, _ in render_clip(rng, size, SplitSpec(clips=1, frames_per_clip=frames))]


def file_frames(path: Path) -> list[bytes]:
    """Every frame of a video file Pillow reads (GIF/WebP/APNG/TIFF) or of a folder of images, as JPEG."""
    path = Path(path)
    try:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            frames = [encode_jpeg(Image.open(p)) for p in files]
        else:
            with Image.open(path) as video:
                frames = [encode_jpeg(frame.copy()) for frame in ImageSequence.Iterator(video)]
    except OSError as error:
        raise OptimError(f"cannot read frames ({error})", path=path,
                         fix="give an animated GIF/WebP/APNG, a multi-page TIFF or a folder of images") from error
    if not frames:
        raise OptimError("no frames found", path=path, fix="give a folder that holds .jpg/.png images")
    return frames


def stream_frames(frames: list[bytes], count: int, faults: Faults = Faults()) -> Iterator[tuple[int, bytes | None]]:
    """(frame index, JPEG bytes) for `count` frames, looping the clip; None means "stall here" (the decoder
    waits `faults.stall_seconds`). Corrupt frames are cut to a third of their bytes."""
    for index in range(count):
        if faults.end_after is not None and index >= faults.end_after:
            return
        if faults.stall_at is not None and index == faults.stall_at:
            yield index, None
        data = frames[index % len(frames)]
        if faults.corrupt_every and index % faults.corrupt_every == faults.corrupt_every - 1:
            data = data[: len(data) // 3]
        yield index, data


def decode(data: bytes) -> Image.Image:
    """JPEG bytes -> RGB image, fully decoded (Pillow decodes lazily; load() forces it, and raises on corrupt
    data)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")

"""Read what a user uploads — an image or a video — with limits, and turn every way it can be wrong (not an
image, corrupt, too large, a video without frames) into one clear `OptimError`, never a traceback."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

from optim.errors import MissingExtraError, OptimError

MAX_UPLOAD_BYTES = 50 * 2**20  # per file; the Streamlit app's server.maxUploadSize says the same (MB)
MAX_IMAGE_PIXELS = 40_000_000  # ~ 7 300 x 5 500: a bigger "image" is refused before it is decoded
MAX_VIDEO_FRAMES = 600  # longer videos are cut here (and the result says so)
MAX_VIDEO_PIXELS = 1920 * 1088  # per frame

Source = str | Path | bytes | BinaryIO


def _size_of(source: Source) -> int:
    if isinstance(source, bytes):
        return len(source)
    if isinstance(source, (str, Path)):
        return Path(source).stat().st_size
    position = source.tell()
    size = source.seek(0, io.SEEK_END)
    source.seek(position)
    return size


def _check_size(source: Source, name: str) -> None:
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise OptimError("the uploaded file is missing", path=name, fix="upload it again")
    size = _size_of(source)
    if size == 0:
        raise OptimError("the file is empty", path=name, fix="upload a non-empty image or video")
    if size > MAX_UPLOAD_BYTES:
        raise OptimError(f"the file is too large ({size / 2**20:.0f} MB; the demo takes up to "
                         f"{MAX_UPLOAD_BYTES // 2**20} MB)", path=name, fix="upload a smaller or shorter file")


def read_image(source: Source, name: str = "upload") -> Image.Image:
    """An uploaded image as RGB (EXIF rotation applied); `name` is what error messages call it."""
    _check_size(source, name)
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with Image.open(handle) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise OptimError(f"the image is too large ({width} x {height} pixels; the demo takes up to "
                                 f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels)", path=name,
                                 fix="downscale it first")
            image.load()
            return ImageOps.exif_transpose(image).convert("RGB")
    except UnidentifiedImageError as error:
        raise OptimError("not an image the demo can read", path=name,
                         fix="upload a JPEG, PNG, WebP, BMP or GIF image (videos go in the video tab)") from error
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise OptimError(f"the image is corrupt or truncated ({error})", path=name,
                         fix="re-export or re-download the image and upload it again") from error


def import_av():
    try:
        import av
    except ImportError as error:
        raise MissingExtraError("av", "demo", "Reading and writing video in the demo") from error
    return av


@dataclass
class VideoInfo:
    """What a video upload holds: frames per second (10 when the file does not say) and its frame size."""

    fps: float
    width: int
    height: int


def open_video(source: Source, name: str = "upload") -> tuple[VideoInfo, Iterator[Image.Image]]:
    """Check a video upload and return its info and an iterator over its first MAX_VIDEO_FRAMES frames (RGB).

    A file that is not a video, has no video stream, too large frames or no decodable frame raises OptimError
    (the last one when the iterator is consumed)."""
    _check_size(source, name)
    av = import_av()
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        container = av.open(str(handle) if isinstance(handle, Path) else handle)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise OptimError(f"not a video the demo can read ({error})", path=name,
                         fix="upload an MP4, WebM, MOV or AVI video") from error
    if not container.streams.video:
        container.close()
        raise OptimError("the video has no frames (the file holds no video stream)", path=name,
                         fix="upload a video with at least one frame (MP4, WebM, MOV, AVI)")
    stream = container.streams.video[0]
    if stream.width * stream.height > MAX_VIDEO_PIXELS:
        container.close()
        raise OptimError(f"the video's frames are too large ({stream.width} x {stream.height}; the demo takes up "
                         "to 1920 x 1080)", path=name, fix="downscale the video first")
    rate = float(stream.average_rate) if stream.average_rate else 10.0
    return VideoInfo(rate, stream.width, stream.height), _frames(container, name, av)


def _frames(container, name: str, av) -> Iterator[Image.Image]:
    count = 0
    try:
        for frame in container.decode(video=0):
            yield frame.to_image().convert("RGB")
            count += 1
            if count >= MAX_VIDEO_FRAMES:
                break
    except av.error.FFmpegError as error:
        if count == 0:
            raise OptimError(f"the video is corrupt: no frame could be decoded ({error})", path=name,
                             fix="re-encode it (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4) and upload it again") from error
    finally:
        container.close()
    if count == 0:
        raise OptimError("the video has no frames", path=name, fix="upload a video with at least one frame")

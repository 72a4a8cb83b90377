"""Image -> model input with numpy and PIL only: the pre-processing every engine shares.

Self-contained on purpose (no torch, no `optim` import): `optim.deploy` copies this file into the Triton
model repository's pre-processing model, so the served path runs exactly this code.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
MAX_IMAGE_PIXELS = 40_000_000  # a decoded image above this is refused (decompression bombs)


def preprocess_array(image: Image.Image, input_size: tuple[int, int]) -> np.ndarray:
    """RGB PIL image -> float32 array (3, H, W) at `input_size` (height, width), ImageNet-normalized.

    A fixed size (rather than DETR's shortest-edge-800 rule) gives every engine static shapes; boxes are
    predicted normalized to the image, so they map back to any original size.
    """
    height, width = input_size
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    pixels = (np.asarray(image, dtype=np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def decode_image(data: bytes) -> Image.Image:
    """Encoded image bytes (JPEG, PNG, ...) -> RGB image; ValueError says why an input is not a usable image."""
    if not data:
        raise ValueError("empty image: the request carried no bytes")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ValueError(f"image of {image.width}x{image.height} pixels is over the limit of "
                                 f"{MAX_IMAGE_PIXELS} pixels")
            return image.convert("RGB")
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"not a decodable image ({error})") from error

"""The one pre-processing every engine shares: resize to the model's fixed input size, ImageNet-normalize."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def preprocess_image(image: Image.Image, input_size: tuple[int, int]) -> torch.Tensor:
    """RGB PIL image -> float32 tensor (3, H, W) at `input_size` (height, width), normalized.

    A fixed size (rather than DETR's shortest-edge-800 rule) gives every engine static shapes; boxes are
    predicted normalized to the image, so they map back to any original size.
    """
    height, width = input_size
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    pixels = (np.asarray(image, dtype=np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy())

"""The one pre-processing every engine shares: resize to the model's fixed input size, ImageNet-normalize."""

from __future__ import annotations

import torch
from PIL import Image

from optim.data.pixels import preprocess_array


def preprocess_image(image: Image.Image, input_size: tuple[int, int]) -> torch.Tensor:
    """RGB PIL image -> float32 tensor (3, H, W) at `input_size` (height, width), normalized (see
    `optim.data.pixels.preprocess_array`)."""
    return torch.from_numpy(preprocess_array(image, input_size))

"""Shared fixtures: a tiny synthetic COCO data set on disk and tiny DETRs built from config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from optim.data.synthetic import SplitSpec, SyntheticSpec, ensure_dataset

TINY_SPLITS = {"train": SplitSpec(clips=4, frames_per_clip=4), "val": SplitSpec(clips=2, frames_per_clip=4),
               "test": SplitSpec(clips=2, frames_per_clip=4)}


@pytest.fixture(scope="session")
def tiny_dataset_root(tmp_path_factory) -> Path:
    """A 64x64 synthetic data set with 16 train, 8 val and 8 test frames."""
    root = tmp_path_factory.mktemp("synthetic")
    return ensure_dataset(root, spec=SyntheticSpec(image_size=64, splits=TINY_SPLITS, seed=1))


@pytest.fixture
def tiny_model():
    """A random tiny DETR (64x64 input, one layer each) in eval mode."""
    from optim.models.zoo import load_model

    torch.manual_seed(0)
    return load_model("tiny-detr-arch").model


@pytest.fixture(scope="module")
def model():
    """Engine parity tests' model: a tiny DETR with random weights; the box head's last layer is re-drawn because DETR initializes it to
    zero, which makes every box exactly (0.5, 0.5, 0.5, 0.5) and a box comparison meaningless."""
    from optim.models.zoo import load_model

    torch.manual_seed(0)
    detr = load_model("tiny-detr-arch").model
    torch.nn.init.normal_(detr.bbox_predictor.layers[-1].weight, std=10.0)
    return detr.eval()


@pytest.fixture(scope="module")
def calibration() -> list[np.ndarray]:
    """Three random (2, 3, 64, 64) calibration batches."""
    rng = np.random.default_rng(1)
    return [rng.normal(size=(2, 3, 64, 64)).astype(np.float32) for _ in range(3)]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Three random 64x64 images for parity checks."""
    return np.random.default_rng(2).normal(size=(3, 3, 64, 64)).astype(np.float32)

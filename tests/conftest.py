"""Shared fixtures: a tiny synthetic COCO data set on disk and tiny DETRs built from config."""

from __future__ import annotations

from pathlib import Path

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


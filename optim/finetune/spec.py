"""The fine-tuning spec (YAML), validated without importing any training library."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from optim.spec_types import (
    BatchSize,
    ImageSize,
    ModelRef,
    OutputDir,
    Seed,
    SpecPath,
    SplitName,
    Steps,
    StrictModel,
    Threads,
)

__all__ = ["FinetuneSpec", "StrictModel"]  # StrictModel lived here before optim.spec_types; kept importable


class FinetuneDataSpec(StrictModel):
    """A COCO folder (`root/<split>/` + `root/annotations/instances_<split>.json`)."""

    root: SpecPath = Path("data/synthetic")
    train_split: SplitName = "train"
    val_split: SplitName = "val"
    test_split: SplitName | None = "test"
    generate: bool = Field(True, description="generate the synthetic data set at `root` if it is missing")
    val_images: int | None = Field(None, ge=1, le=10_000_000, description="evaluate on the first N val images only")


class FinetuneModelSpec(StrictModel):
    """Start from an architecture with random weights (`arch`) or from a zoo model / folder / hub id (`init`)."""

    arch: Literal["synth-detr", "tiny-detr", "detr-r50"] | None = "synth-detr"
    init: ModelRef | None = None
    allow_missing_weights: bool = Field(False, description="start from an `init` checkpoint that lacks tensors the "
                                        "architecture needs (they get random values); off: that is an error")
    weight_init: Literal["detr", "transformers"] = Field(
        "detr", description="random weights of an `arch`: the original DETR's draw (Xavier transformer, N(0, 1) object "
        "queries; leaves DETR's initial plateau thousands of steps sooner) or Hugging Face's (N(0, 0.02) everywhere); "
        "see optim/finetune/weight_init.py")

    @model_validator(mode="before")
    @classmethod
    def _init_replaces_default_arch(cls, data):
        if isinstance(data, dict) and data.get("init") is not None and "arch" not in data:
            return {**data, "arch": None}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> FinetuneModelSpec:
        if (self.arch is None) == (self.init is None):
            raise ValueError("give exactly one of 'arch' (random init) or 'init' (a model to start from)")
        if self.init is not None and "weight_init" in self.model_fields_set:
            raise ValueError("'weight_init' draws the random weights of an 'arch'; a model given by 'init' keeps its own")
        return self


class LossWeightsSpec(StrictModel):
    """DETR's Hungarian loss weights, each used both in the matching cost and in the loss (as in DETR).

    The defaults are DETR's own (and Hugging Face's `DetrConfig`'s); the class term's weight is 1. The box
    weights are whole numbers because `DetrConfig` types them so."""

    bbox_l1: int = Field(5, ge=0, le=100, description="L1 distance of normalized (cx, cy, w, h) boxes")
    giou: int = Field(2, ge=0, le=100, description="generalized IoU, the scale-invariant box term")
    no_object: float = Field(0.1, gt=0, le=1, description="relative weight of the 'no object' class")


class FinetuneSpec(StrictModel):
    """Everything a fine-tuning run needs; both trainers read the same spec."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)
    trainer: Literal["transformers", "lightning"] = "transformers"
    model: FinetuneModelSpec = FinetuneModelSpec()
    data: FinetuneDataSpec = FinetuneDataSpec()
    input_size: ImageSize = (128, 128)
    steps: Steps = 30000
    batch_size: BatchSize = 16
    lr: float = Field(2e-4, gt=0, le=1)
    weight_decay: float = Field(1e-4, ge=0, le=1)
    warmup_steps: int = Field(500, ge=0, le=10_000_000)
    grad_clip: float = Field(0.1, gt=0, le=1000)
    hflip: bool = True
    loss: LossWeightsSpec = LossWeightsSpec()
    encoder_aux_weight: float = Field(1.0, ge=0, le=1000, description="dense encoder supervision while training "
                                      "(optim.finetune.dense_aux); 0 turns it off")
    query_groups: int = Field(1, ge=1, le=64, description="Group DETR: train this many groups of object queries "
                              "(optim.finetune.query_groups); 1 = DETR's own queries only")
    ema_decay: float | None = Field(None, gt=0, lt=1, description="keep an exponential moving average of the "
                                    "weights (parameters and batch-norm statistics) with this decay per step; "
                                    "evaluation and the exported model use it. None = off")
    eval_every: Steps = 2000
    save_every: Steps = 1000
    logger: Literal["csv", "tensorboard"] = "csv"
    seed: Seed = 0
    threads: Threads | None = Field(None, description="torch intra-op threads (default: all cores)")
    output_dir: OutputDir = Path("runs/finetune")

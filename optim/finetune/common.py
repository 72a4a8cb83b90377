"""What both trainers share: data sets, the model to train, the optimizer schedule and the final export."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from optim.atomic import write_json_atomic
from optim.data.coco import CocoDetection, CocoFolder, collate_detection
from optim.data.synthetic import ensure_dataset
from optim.evaluation.evaluate import evaluate_pytorch
from optim.finetune.spec import FinetuneSpec, LossWeightsSpec
from optim.finetune.weight_init import init_like_original_detr
from optim.models.architectures import ARCHITECTURES
from optim.models.zoo import load_model


@dataclass
class TrainingData:
    """The train set (with augmentation) and the val/test sets (without)."""

    train: CocoDetection
    val: CocoDetection
    test: CocoDetection | None


def seed_everything(seed: int) -> None:
    """Fix Python, NumPy and torch RNGs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_data(spec: FinetuneSpec) -> TrainingData:
    """Open the spec's COCO splits, generating the synthetic data set first when asked to."""
    root = spec.data.root
    splits = tuple(s for s in (spec.data.train_split, spec.data.val_split, spec.data.test_split) if s)
    if spec.data.generate:
        ensure_dataset(root, splits)
    size = tuple(spec.input_size)
    train = CocoDetection(CocoFolder.from_root(root, spec.data.train_split), size, hflip=spec.hflip)
    val = CocoDetection(CocoFolder.from_root(root, spec.data.val_split), size)
    if spec.data.val_images:
        val.image_ids = val.image_ids[: spec.data.val_images]
    test = CocoDetection(CocoFolder.from_root(root, spec.data.test_split), size) if spec.data.test_split else None
    return TrainingData(train, val, test)


def build_model(spec: FinetuneSpec, label_names: list[str]):
    """A DETR to train, every parameter trainable.

    Hugging Face's DETR freezes the ResNet stem and first stage (and uses frozen batch norm), which suits
    an ImageNet-pretrained backbone; trained from scratch, the stem must learn too.
    """
    from transformers import DetrForObjectDetection

    if spec.model.arch:
        config = ARCHITECTURES[spec.model.arch](num_labels=len(label_names))
        model = DetrForObjectDetection(config)
        if spec.model.weight_init == "detr":
            init_like_original_detr(model)
    else:
        model = load_model(spec.model.init, allow_missing_weights=spec.model.allow_missing_weights).model
    model.config.id2label = dict(enumerate(label_names))
    model.config.label2id = {name: i for i, name in enumerate(label_names)}
    _set_loss_weights(model.config, spec.loss)
    if spec.model.arch:
        _unfreeze_batch_norm(model.model.backbone)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model.train()


def _set_loss_weights(config, weights: LossWeightsSpec) -> None:
    """Put the spec's loss weights where Hugging Face's DETR loss reads them: the Hungarian matcher's costs
    and the loss coefficients (both the same, as in DETR)."""
    config.bbox_cost = config.bbox_loss_coefficient = weights.bbox_l1
    config.giou_cost = config.giou_loss_coefficient = weights.giou
    config.eos_coefficient = weights.no_object


class TrainableBatchNorm2d(torch.nn.BatchNorm2d):
    """`BatchNorm2d` without `num_batches_tracked` (DETR's frozen batch norm has none). Loading a state dict that
    carries no module versions (safetensors, Lightning's weight averaging) must not invent that entry, as
    `BatchNorm2d` does for state dicts older than its version 2."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, {**local_metadata, "version": 2}, *args, **kwargs)


def _unfreeze_batch_norm(module: torch.nn.Module) -> None:
    """Swap DETR's frozen batch norm for trainable `BatchNorm2d` (same parameter and buffer names, same
    eps), so a backbone trained from scratch is normalized; the saved weights load back into the frozen
    kind, which then computes exactly what `BatchNorm2d` computes in eval mode."""
    for name, child in module.named_children():
        if type(child).__name__ == "DetrFrozenBatchNorm2d":
            norm = TrainableBatchNorm2d(child.weight.shape[0], eps=1e-5)
            with torch.no_grad():
                for key in ("weight", "bias", "running_mean", "running_var"):
                    getattr(norm, key).copy_(getattr(child, key))
            norm.num_batches_tracked = None  # unused with a fixed momentum; keeps checkpoints key-compatible
            setattr(module, name, norm)
        else:
            _unfreeze_batch_norm(child)


def wrap_for_training(model, spec: FinetuneSpec) -> torch.nn.Module:
    """DETR plus the training-only aids the spec asks for (`encoder_aux_weight`, `query_groups`), in
    channels-last memory format (with `collate_for_training`'s batches: 1.18x faster training steps than
    NCHW on this project's CPU, together with the fused AdamW both trainers use; see the model card)."""
    from optim.finetune.training_aids import DetrWithTrainingAids

    if spec.encoder_aux_weight > 0 or spec.query_groups > 1:
        model = DetrWithTrainingAids(model, spec.encoder_aux_weight, spec.query_groups)
    return model.to(memory_format=torch.channels_last)


def collate_for_training(batch: list[tuple[torch.Tensor, dict]]) -> dict[str, object]:
    """`collate_detection` with the images in channels-last memory format (see `wrap_for_training`)."""
    collated = collate_detection(batch)
    collated["pixel_values"] = collated["pixel_values"].contiguous(memory_format=torch.channels_last)
    return collated


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The DETR inside a training wrapper (or the model itself)."""
    return getattr(model, "detr", model)


def lr_lambda(spec: FinetuneSpec):
    """Linear warm-up, then cosine decay to 10 % of the peak learning rate."""
    import math

    def factor(step: int) -> float:
        if step < spec.warmup_steps:
            return (step + 1) / spec.warmup_steps
        progress = min(1.0, (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def export_final(model, spec: FinetuneSpec, data: TrainingData, out_dir: Path, train_seconds: float) -> dict:
    """Save the model as safetensors (`save_pretrained`) with `optim.json`, evaluate it on val and test,
    and write `metrics.json`; return the metrics."""
    model_dir = out_dir / "model"
    model = unwrap(model).eval().to(memory_format=torch.contiguous_format)  # safetensors stores contiguous tensors
    model.save_pretrained(model_dir, safe_serialization=True)
    write_json_atomic(model_dir / "optim.json", {"input_size": list(spec.input_size), "labels": data.train.label_names})
    metrics = {"val": evaluate_pytorch(model, data.val)}
    if data.test is not None:
        metrics["test"] = evaluate_pytorch(model, data.test)
    metrics.update({"train_seconds": round(train_seconds, 1), "steps": spec.steps, "trainer": spec.trainer,
                    "threads": torch.get_num_threads(),
                    "params": sum(p.numel() for p in model.parameters()), "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    write_json_atomic(out_dir / "metrics.json", metrics)
    return metrics

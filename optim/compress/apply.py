"""Run one `prune` step of a variant: dispatch on its method, optionally fine-tune, report what was done."""

from __future__ import annotations

import copy

import torch

from optim.compress import CompressionResult, prune_detr, prune_structured, sparsity
from optim.compress.distill import apply_distill, finetune_briefly, load_batch
from optim.data.coco import CocoDetection
from optim.errors import OptimError
from optim.spec import PruneStep

__all__ = ["apply_distill", "apply_prune"]  # the runner's two entry points

FINETUNE_LR = 1e-4
FINETUNE_BATCH_SIZE = 8
TAYLOR_BATCHES = 4
TRACE_INPUT = (128, 128)  # any size works for tracing the graph; used only without calibration images


def apply_prune(model: torch.nn.Module, step: PruneStep, calibration: list[torch.Tensor] | None = None,
                train_data: CocoDetection | None = None) -> CompressionResult:
    """Prune a copy of `model` (the input is left untouched) as `step` says.

    `calibration` holds pixel_values batches (needed by `queries`; used by `channels`); `train_data` is the
    labelled training split, needed when `step.finetune_steps > 0` and preferred by Taylor importance.
    """
    _check(step, calibration, train_data)
    model = copy.deepcopy(model)
    device = next(model.parameters()).device
    calibration = [batch.to(device) for batch in calibration or []]
    method = step.method
    if method == "channels":
        example = calibration[0][:1] if calibration else torch.zeros(1, 3, *TRACE_INPUT, device=device)
        taylor_batches, notes = [], []
        if step.importance == "taylor":
            taylor_batches, notes = _taylor_batches(device, calibration, train_data)
        notes = prune_structured.prune_channels(model, step.ratio, step.importance, example, taylor_batches) + notes
        notes.insert(0, f"channel pruning ({step.importance} importance, ratio {step.ratio:g} per group)")
    elif method in ("decoder_layers", "encoder_layers"):
        notes = prune_detr.keep_first_layers(model, method.split("_")[0], step.keep)
    elif method == "queries":
        notes = prune_detr.keep_used_queries(model, step.keep, calibration)
    elif method == "heads":
        notes = prune_detr.prune_heads(model, step.ratio)
    elif method == "unstructured":
        notes = sparsity.prune_unstructured(model, step.ratio)
    elif method == "semi_structured_2_4":
        notes = sparsity.prune_two_four(model)
    else:  # the spec's Literal makes this unreachable from YAML
        raise OptimError(f"unknown prune method '{method}'", field="steps[].method")
    if step.finetune_steps:
        losses = finetune_briefly(model, train_data, step.finetune_steps, FINETUNE_LR, FINETUNE_BATCH_SIZE)
        notes.append(f"fine-tuned {step.finetune_steps} steps with DETR's loss (no teacher, lr {FINETUNE_LR:g}, "
                     f"batch {FINETUNE_BATCH_SIZE}): loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    return CompressionResult(model.eval(), notes)


def _check(step: PruneStep, calibration: list[torch.Tensor] | None, train_data: CocoDetection | None) -> None:
    """Spec combinations that cannot run, each with its fix."""
    if step.importance == "taylor" and step.method != "channels":
        raise OptimError(f"importance 'taylor' applies to method 'channels' only, not '{step.method}'",
                         field="steps[].importance", fix="remove 'importance' or use method: channels")
    if step.method in ("decoder_layers", "encoder_layers", "queries") and step.keep is None:
        raise OptimError(f"method '{step.method}' needs 'keep' (how many to keep)", field="steps[].keep",
                         fix="e.g. keep: 3")
    if step.finetune_steps and train_data is None:
        raise OptimError("fine-tuning after pruning needs the data set's training split", field="steps[].finetune_steps",
                         fix="set finetune_steps: 0, or use a data set with a 'train' split")
    if step.method == "channels" and step.importance == "taylor" and not calibration and train_data is None:
        raise OptimError("taylor importance needs images for its gradients", field="steps[].importance",
                         fix="use importance: magnitude, or provide calibration images")


def _taylor_batches(device: torch.device, calibration: list[torch.Tensor] | None,
                    train_data: CocoDetection | None) -> tuple[list[dict], list[str]]:
    """Batches for Taylor importance: labelled training batches (DETR's loss) when there is a training
    split, else calibration images with the label-free proxy loss ||logits|| + ||pred_boxes||."""
    if train_data is not None:
        size = min(FINETUNE_BATCH_SIZE, len(train_data))
        batches = [load_batch(train_data, list(range(i * size, (i + 1) * size)), device)
                   for i in range(min(TAYLOR_BATCHES, len(train_data) // size))]
        return batches, [f"Taylor importance from DETR's loss on {len(batches)} labelled training batches"]
    batches = [{"pixel_values": x.to(device)} for x in calibration[:TAYLOR_BATCHES]]
    return batches, [(f"Taylor importance from the label-free proxy loss ||logits|| + ||pred_boxes|| on "
                     f"{sum(b['pixel_values'].shape[0] for b in batches)} calibration images (no labels available)")]

"""Weight sparsity: unstructured L1 pruning and the 2:4 semi-structured pattern of sparse tensor cores.

Masks are computed and applied with `torch.nn.utils.prune` and folded into the weights at once
(`prune.remove`), so the model keeps plain parameters; fine-tuning keeps the zeros (see `distill.zero_masks`).
The weights stay dense tensors with zeros: no engine used here runs them faster on a CPU.
"""

from __future__ import annotations

import torch
from torch.nn.utils import prune


def _weighted_layers(model: torch.nn.Module, types: tuple[type, ...]) -> list[tuple[str, torch.nn.Module]]:
    return [(name, module) for name, module in model.named_modules() if isinstance(module, types)]


def prune_unstructured(model: torch.nn.Module, ratio: float) -> list[str]:
    """Zero the `ratio` smallest-magnitude weights of every Linear and Conv2d layer (layer by layer)."""
    layers = _weighted_layers(model, (torch.nn.Linear, torch.nn.Conv2d))
    for _, module in layers:
        prune.l1_unstructured(module, "weight", amount=ratio)
        prune.remove(module, "weight")
    return [(f"unstructured L1 pruning: {ratio:.0%} of the weights of each of {len(layers)} Linear/Conv2d layers "
            "set to zero; weights stay dense, so there is no CPU speed-up (only compressibility)")]


def two_four_mask(weight: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest |w| of every 4 consecutive inputs of each output row (weight: out x in, in % 4 == 0)."""
    groups = weight.detach().abs().reshape(weight.shape[0], -1, 4)
    top = groups.topk(2, dim=-1).indices
    mask = torch.zeros_like(groups).scatter_(-1, top, 1.0)
    return mask.reshape(weight.shape)


def prune_two_four(model: torch.nn.Module) -> list[str]:
    """Apply the 2:4 pattern to every Linear layer whose input width is a multiple of 4."""
    layers = _weighted_layers(model, (torch.nn.Linear,))
    pruned = [name for name, module in layers if module.in_features % 4 == 0]
    for name, module in layers:
        if module.in_features % 4 == 0:
            prune.custom_from_mask(module, "weight", two_four_mask(module.weight))
            prune.remove(module, "weight")
    notes = [(f"2:4 semi-structured sparsity on {len(pruned)} of {len(layers)} Linear layers (50% of their weights); "
             "weights stay dense with zeros: CPU engines run no faster; an Ampere+ GPU can use sparse tensor "
             "cores (torch.sparse.to_sparse_semi_structured in fp16/bf16, or TensorRT with sparse weights enabled)")]
    skipped = sorted({name for name, _ in layers} - set(pruned))
    if skipped:
        notes.append(f"left dense (input width not a multiple of 4): {', '.join(skipped)}")
    return notes


def sparsity(model: torch.nn.Module, types: tuple[type, ...] = (torch.nn.Linear, torch.nn.Conv2d)) -> float:
    """Fraction of zero weights over the layers of the given types."""
    layers = _weighted_layers(model, types)
    zeros = sum(int((module.weight == 0).sum()) for _, module in layers)
    return zeros / max(1, sum(module.weight.numel() for _, module in layers))

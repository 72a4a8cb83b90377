"""Size and compute of a model: parameters, FLOPs of one forward pass, bytes of its weights."""

from __future__ import annotations

import torch


def model_stats(model: torch.nn.Module, input_size: tuple[int, int]) -> dict[str, float | int]:
    """Parameters, non-zero parameters, FLOPs of one batch-1 forward at `input_size` (height, width) and the
    bytes of all parameters and buffers.

    FLOPs come from `torch.utils.flop_counter.FlopCounterMode`, which counts matrix products and
    convolutions as 2 x multiply-accumulates and ignores element-wise ops, norms and softmax; zeros from
    unstructured pruning are still counted (the kernels stay dense).
    """
    from torch.utils.flop_counter import FlopCounterMode

    parameters = list(model.parameters())
    device = parameters[0].device if parameters else torch.device("cpu")
    example = torch.zeros(1, 3, *input_size, device=device)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(pixel_values=example)
    model.train(was_training)
    tensors = list(model.state_dict().values())
    return {
        "params": sum(p.numel() for p in parameters),
        "nonzero_params": sum(int(torch.count_nonzero(p)) for p in parameters),
        "flops": float(counter.get_total_flops()),
        "size_bytes": sum(t.numel() * t.element_size() for t in tensors),
    }

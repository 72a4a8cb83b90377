"""NVIDIA Model Optimizer (`modelopt.torch.quantization`) post-training quantization of the PyTorch DETR:
INT8 or FP8 fake quantization calibrated on CUDA, DETR blocks kept in float, exported to an ONNX model
whose Q/DQ nodes TensorRT builds in explicit-quantization mode.

Export goes through `torch.onnx.export` (TorchScript exporter), for which modelopt's quantizers emit
`QuantizeLinear`/`DequantizeLinear` (INT8) or `trt::TRT_FP8QuantizeLinear`/`TRT_FP8DequantizeLinear` (FP8).
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import numpy as np
import torch

from optim.engines.onnx_export import export_onnx
from optim.errors import MissingExtraError, OptimError
from optim.models.blocks import BLOCK_PREFIXES
from optim.quantize.calibration import require_batches
from optim.spec import QuantizeStep

# quantize.method -> (number format, modelopt's preset config)
FORMATS = {"modelopt_int8": ("int8", "INT8_DEFAULT_CFG"), "modelopt_fp8": ("fp8", "FP8_DEFAULT_CFG"),
           "int8": ("int8", "INT8_DEFAULT_CFG")}


def import_mtq():
    """`modelopt.torch.quantization`, or MissingExtraError naming the `gpu` extra."""
    try:
        import modelopt.torch.quantization as mtq
    except ImportError as error:
        raise MissingExtraError("nvidia-modelopt", "gpu", "NVIDIA Model Optimizer quantization") from error
    return mtq


def keep_float_patterns(blocks: list[str]) -> list[str]:
    """modelopt wildcards matching every quantizer inside the given DETR blocks (module paths of the bare
    `DetrForObjectDetection`, e.g. `class_labels_classifier.*`)."""
    return [f"{prefix}.*" for block in blocks for prefix in BLOCK_PREFIXES[block]]


def check_step(step: QuantizeStep) -> None:
    """Refuse options modelopt's preset configs do not honour, rather than ignoring them silently."""
    if step.calibration != "minmax":
        raise OptimError(f"modelopt calibrates with max (absolute maximum) ranges; calibration: {step.calibration} "
                         "is not available here", field="steps.quantize.calibration",
                         fix="use calibration: minmax, or method: int8 (ONNX Runtime calibration: entropy, percentile)")
    if FORMATS[step.method][0] == "int8" and not step.per_channel:
        raise OptimError("modelopt INT8 always uses per-channel weight scales", field="steps.quantize.per_channel",
                         fix="set per_channel: true")


def quantize_torch(model: torch.nn.Module, step: QuantizeStep, batches: list[np.ndarray],
                   device: str = "cuda") -> torch.nn.Module:
    """A fake-quantized copy of `model` on `device`: modelopt's INT8 or FP8 preset, calibrated (max) on
    `batches`, with the quantizers of `step.keep_float` blocks disabled. `model` itself is untouched."""
    mtq = import_mtq()
    check_step(step)
    require_batches(batches, step.method)
    fmt, preset = FORMATS[step.method]
    quantized = copy.deepcopy(model).to(device).eval()

    def forward_loop(module: torch.nn.Module) -> None:
        with torch.no_grad():
            for batch in batches:
                module(pixel_values=torch.from_numpy(batch).to(device))

    mtq.quantize(quantized, copy.deepcopy(getattr(mtq, preset)), forward_loop=forward_loop)
    for pattern in keep_float_patterns(step.keep_float):
        mtq.disable_quantizer(quantized, pattern)
    disable_dead_quantizers(quantized)
    if fmt == "fp8":
        # TensorRT has no FP8 tactic for a quantized convolution over 3 raw RGB channels on some GPUs
        # (Blackwell); leaving the first convolution's input in float is also standard practice.
        for module in quantized.modules():
            if isinstance(module, torch.nn.Conv2d) and module.in_channels <= 3 and hasattr(module, "input_quantizer"):
                module.input_quantizer.disable()
    return quantized


def disable_dead_quantizers(model: torch.nn.Module) -> int:
    """Disable the quantizers whose calibrated range is zero or NaN, and return how many there were.

    Their tensor was all zeros during calibration: DETR's decoder starts from all-zero queries, so the
    first layer's value projection reads zeros. Quantizing it gains nothing, and FP8 export divides by
    the range (scale = 448 / amax)."""
    from modelopt.torch.quantization.nn import TensorQuantizer

    dead = 0
    for module in model.modules():
        if (isinstance(module, TensorQuantizer) and module.is_enabled and torch.is_tensor(module.amax)
                and (torch.isnan(module.amax).any() or (module.amax <= 0).all())):
            module.disable()
            dead += 1
    return dead


def enabled_quantizers(model: torch.nn.Module) -> dict[str, int]:
    """How many modelopt quantizers are enabled in each DETR block ("other" outside them)."""
    from modelopt.torch.quantization.nn import TensorQuantizer

    from optim.models.blocks import block_of_module

    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, TensorQuantizer) and module.is_enabled:
            block = block_of_module(name) or "other"
            counts[block] = counts.get(block, 0) + 1
    return counts


def export_context() -> contextlib.AbstractContextManager:
    """The context modelopt-quantized models must be traced in by `torch.export` (Torch-TensorRT)."""
    from modelopt.torch.quantization.utils import export_torch_mode

    return export_torch_mode()


def quantize_to_onnx(model: torch.nn.Module, step: QuantizeStep, batches: list[np.ndarray], output: Path,
                     input_size: tuple[int, int], opset: int) -> list[str]:
    """Quantize `model` with modelopt on CUDA and write the Q/DQ ONNX model to `output`; returns notes."""
    quantized = quantize_torch(model, step, batches)
    export_onnx(quantized, output, input_size, opset)
    fmt, preset = FORMATS[step.method]
    counts = enabled_quantizers(quantized)
    kept = ", ".join(step.keep_float) or "none"
    del quantized
    torch.cuda.empty_cache()
    return [(f"modelopt {fmt.upper()} ({preset}, max calibration on {sum(len(b) for b in batches)} image(s)); "
             f"enabled quantizers by block: {counts}; blocks kept in float: {kept}")]

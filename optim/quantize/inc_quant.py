"""Intel Neural Compressor 3.x: accuracy-aware post-training static INT8 of a PyTorch DETR.

INC 3.x has no ONNX Runtime back end (2.x had one but needs numpy < 2), so this uses its PyTorch API:
the DETR is captured with `torch.export` (dynamic batch), and `autotune` tries a config set that starts at
full INT8 (PT2E + X86InductorQuantizer, Q/DQ pairs around every Conv/Linear) and then keeps more and more
DETR blocks in FP32 (INC's fallback), ordered by how much Conv/Linear work stays FP32. Tuning stops at the
first config whose mAP on the calibration split is within `accuracy_tolerance` of FP32 (relative), or
after `max_trials`. The result is a Q/DQ graph: eager PyTorch only simulates INT8 (slower than FP32);
`torch.compile` with Inductor freezing lowers it to oneDNN INT8 kernels.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from optim.errors import MissingExtraError, OptimError
from optim.models.blocks import BLOCK_PREFIXES, block_of_module
from optim.spec import QuantizeStep

# INC's activation observers per QuantizeStep.calibration ("kl" = histogram, entropy-style).
ACT_ALGO = {"minmax": "minmax", "entropy": "kl"}
# The exported graph wraps the DETR in `RawOutputs`, whose attribute `model` prefixes every module path.
WRAPPER_PREFIX = "model."

TorchForward = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class DetrRaw(NamedTuple):
    """What `QuantizedDetr` returns: the two raw outputs every engine reads."""

    logits: torch.Tensor
    pred_boxes: torch.Tensor


class QuantizedDetr(torch.nn.Module):
    """The INC graph (pixel_values -> (logits, pred_boxes)) behind DETR's call convention
    (`model(pixel_values=x).logits`), so that engines run it like the float model."""

    def __init__(self, graph: torch.nn.Module):
        super().__init__()
        self.graph = graph

    def forward(self, pixel_values: torch.Tensor) -> DetrRaw:
        return DetrRaw(*self.graph(pixel_values))

    def train(self, mode: bool = True) -> QuantizedDetr:
        # An exported graph has no train mode (its eval() raises); the Q/DQ graph is inference-only anyway.
        if mode:
            raise OptimError("an INC-quantized DETR is inference-only and cannot be put in training mode")
        return self


def inc_api():
    """(quantization module, export function) of Neural Compressor 3.x for PyTorch, or MissingExtraError."""
    import importlib.util

    for package in ("neural_compressor", "torchao"):  # torch >= 2.11: INC's PT2E path runs on torchao
        if importlib.util.find_spec(package) is None:
            raise MissingExtraError(package, "inc", "Intel Neural Compressor quantization (method 'inc')")
    try:
        from neural_compressor.torch import quantization
        from neural_compressor.torch.export import export
    except ImportError as error:  # e.g. plain `pip install neural-compressor` lacks the [pt] extra's packages
        raise OptimError(f"neural_compressor is installed but its PyTorch API cannot be imported ({error})",
                         fix="pip install 'neural-compressor[pt]>=3.10,<4'") from error
    return quantization, export


def block_macs(model: torch.nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Multiply-accumulates of the Conv2d/Linear layers of each DETR block for one image."""
    macs: Counter[str] = Counter()

    def recorder(block: str):
        def record(module, _inputs, output):
            if isinstance(module, torch.nn.Linear):
                per_output = module.in_features
            else:
                per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
            macs[block] += output.numel() * per_output

        return record

    handles = [module.register_forward_hook(recorder(block_of_module(name)))
               for name, module in model.named_modules()
               if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and block_of_module(name)]
    try:
        with torch.no_grad():
            model(pixel_values=example[:1])
    finally:
        for handle in handles:
            handle.remove()
    return dict(macs)


def fallback_plans(macs: dict[str, int], keep_float: list[str]) -> list[tuple[str, ...]]:
    """Which blocks each trial keeps in FP32, beyond `keep_float`: full INT8 first, then every subset of the
    other blocks by increasing FP32 work (ties: fewer blocks first). All-FP32 is never a candidate."""
    blocks = sorted(block for block, work in macs.items() if work and block not in keep_float)
    subsets = [combo for size in range(len(blocks)) for combo in itertools.combinations(blocks, size)]
    return sorted(subsets, key=lambda combo: (sum(macs[b] for b in combo), len(combo)))


def static_config(quantization, step: QuantizeStep, fp32_blocks: tuple[str, ...]):
    """INC StaticQuantConfig: INT8 everywhere except the module paths of `fp32_blocks`."""
    config = quantization.StaticQuantConfig(w_granularity="per_channel" if step.per_channel else "per_tensor",
                                            act_algo=ACT_ALGO[step.calibration])
    for block in fp32_blocks:
        for prefix in BLOCK_PREFIXES[block]:
            config.set_local(WRAPPER_PREFIX + prefix, quantization.StaticQuantConfig(w_dtype="fp32", act_dtype="fp32"))
    return config


def compute_ops(graph: torch.fx.GraphModule) -> tuple[Counter[str], Counter[str]]:
    """(INT8, FP32) Conv/Linear counts per DETR block of a converted graph: INT8 when the weight is dequantized."""
    compute = {torch.ops.aten.conv2d.default, torch.ops.aten.linear.default}
    int8: Counter[str] = Counter()
    fp32: Counter[str] = Counter()
    for node in graph.graph.nodes:
        if node.op != "call_function" or node.target not in compute:
            continue
        stack = list(node.meta.get("nn_module_stack", {}).values())
        path = stack[-1][0].removeprefix("L['self'].") if stack else ""
        block = block_of_module(path.removeprefix(WRAPPER_PREFIX)) or "other"
        weight = node.args[1]
        quantized = isinstance(weight, torch.fx.Node) and "dequantize" in str(weight.target)
        (int8 if quantized else fp32)[block] += 1
    return int8, fp32


def _export(export, model: torch.nn.Module, example: torch.Tensor):
    """The DETR as an ATen graph with a dynamic batch dimension."""
    from optim.engines.onnx_export import RawOutputs

    if example.shape[0] < 2:  # torch.export specializes a size-1 dimension to a constant
        example = example.repeat(2, 1, 1, 1)
    batch = torch.export.Dim("batch", min=1, max=1024)
    try:
        return export(RawOutputs(model.eval()), (example,), dynamic_shapes=({0: batch},)), example
    except Exception as error:  # torch.export raises many types (Unsupported, UserError, RuntimeError...)
        raise OptimError(f"torch.export could not capture the model for INC ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''})", field="model",
                         fix="use method torch_dynamic or another engine's INT8 for this model") from error


def _tuning_failure(step: QuantizeStep, baseline: float, trials: list[tuple[tuple[str, ...], float]]) -> OptimError:
    lines = "; ".join(f"trial {i} (FP32: {', '.join(plan) or 'none'}) mAP {score:.4f}"
                      for i, (plan, score) in enumerate(trials, 1))
    return OptimError(f"Neural Compressor found no INT8 configuration within {step.accuracy_tolerance:.1%} relative "
                      f"mAP loss of FP32 ({baseline:.4f}) in {len(trials)} trial(s): {lines}",
                      field="steps.quantize.accuracy_tolerance",
                      fix="raise accuracy_tolerance or max_trials, or keep_float a sensitive block")


def quantize_inc_torch(model: torch.nn.Module, step: QuantizeStep, calibration_batches: list[np.ndarray],
                       evaluate_torch: Callable[[TorchForward], float] | None,
                       example_input: torch.Tensor | np.ndarray) -> tuple[torch.nn.Module, list[str]]:
    """Accuracy-aware static INT8 of a float DETR with INC's `autotune`; returns (QuantizedDetr, report notes).

    evaluate_torch(forward) -> mAP on the calibration split, where forward maps a float32 (B, 3, H, W) tensor
    to (logits, pred_boxes) tensors; INC calls it on the FP32 graph first (the baseline), then once per trial.
    Raises OptimError when no trial is within `step.accuracy_tolerance` (INC itself would return the best
    failing trial once max_trials is reached, and None when the config set runs out first)."""
    if evaluate_torch is None:
        raise OptimError("quantize method 'inc' tunes against the evaluation metric, but no evaluation "
                         "function was supplied", field="steps.quantize.method",
                         fix="run it through `python -m optim.run` (it supplies BuildContext.evaluate_torch)")
    if step.calibration not in ACT_ALGO:
        raise OptimError(f"calibration '{step.calibration}' is not available with INC", field="steps.quantize.calibration",
                         fix=f"use one of {sorted(ACT_ALGO)}")
    if not calibration_batches:
        raise OptimError("quantize method 'inc' needs calibration images, and none were given",
                         field="data.calibration_images", fix="set data.calibration_images >= 1")
    example = torch.as_tensor(np.asarray(example_input, dtype=np.float32))
    plans = fallback_plans(block_macs(model, example), step.keep_float)
    if not plans:
        raise OptimError("every DETR block is in keep_float: nothing is left for INC to quantize",
                         field="steps.quantize.keep_float", fix="remove a block from keep_float")
    plans = plans[: step.max_trials]
    quantization, export = inc_api()
    graph, example = _export(export, model, example)

    scores: list[float] = []

    def evaluate(candidate: torch.nn.Module) -> float:
        with torch.no_grad():
            score = float(evaluate_torch(candidate))
        if not scores and score <= 0:  # the FP32 baseline: a relative loss of nothing is meaningless
            raise OptimError(f"the FP32 model scores mAP {score} on the calibration split, so INC has no accuracy "
                             "to preserve", field="data.calibration_split",
                             fix="use a trained model, or a calibration split with annotations it can detect")
        scores.append(score)
        return score

    def calibrate(prepared: torch.nn.Module) -> None:
        with torch.no_grad():
            for batch in calibration_batches:
                prepared(torch.from_numpy(batch))

    tuning = quantization.TuningConfig(config_set=[static_config(quantization, step, plan) for plan in plans],
                                       tolerable_loss=step.accuracy_tolerance, max_trials=step.max_trials)
    quantized = quantization.autotune(graph, tuning, eval_fn=evaluate, run_fn=calibrate, example_inputs=(example,))
    baseline, trials = scores[0], list(zip(plans, scores[1:]))
    target = baseline * (1 - step.accuracy_tolerance)  # INC's own acceptance rule
    if quantized is None or not trials or trials[-1][1] < target:
        raise _tuning_failure(step, baseline, trials)
    plan, score = trials[-1]  # INC stops at the first config that meets the target
    return QuantizedDetr(quantized), _notes(step, quantized, plan, len(trials), baseline, score)


def _notes(step: QuantizeStep, graph, plan: tuple[str, ...], trials: int, baseline: float, score: float) -> list[str]:
    """Report lines: the tuning outcome, which blocks/ops stayed FP32, how the model runs."""
    from neural_compressor import __version__

    int8, fp32 = compute_ops(graph)
    kept = [f"{block} (fallback)" for block in plan] + [f"{block} (keep_float)" for block in step.keep_float]
    fp32_ops = ", ".join(f"{block} {count}" for block, count in sorted(fp32.items())) or "none"
    return [
        (f"INC {__version__} accuracy-aware static INT8 (PT2E, X86InductorQuantizer, {step.calibration}, "
         f"{'per-channel' if step.per_channel else 'per-tensor'} weights): trial {trials} of at most "
         f"{step.max_trials} passed, calibration mAP {score:.4f} vs FP32 {baseline:.4f} "
         f"(relative loss {(baseline - score) / baseline:.2%}, tolerance {step.accuracy_tolerance:.2%})"),
        (f"kept in FP32: {', '.join(kept) or 'none'}; Conv/Linear INT8: {sum(int8.values())}, "
         f"FP32: {sum(fp32.values())} ({fp32_ops})"),
        "Q/DQ graph: eager PyTorch simulates INT8 (slower than FP32); torch_compile runs oneDNN INT8 kernels",
    ]

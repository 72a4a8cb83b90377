"""Intel Neural Compressor (2.x API): accuracy-aware post-training static quantization of an ONNX model.

INC quantizes, scores each candidate with the runner's evaluation (COCO mAP of the ONNX model) and falls
back op types, then single ops, to FP32 until the relative mAP loss is within `accuracy_tolerance` or
`max_trials` are spent. Only Neural Compressor 2.x has the ONNX Runtime back end (3.x kept PyTorch and
TensorFlow; ONNX moved to `onnx-neural-compressor`), and 2.x requires numpy < 2.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from optim.errors import MissingExtraError, OptimError
from optim.models.blocks import block_of_node
from optim.quantize.calibration import LabelledBatches
from optim.quantize.ort_quant import float_compute_nodes, nodes_in_blocks
from optim.spec import QuantizeStep

FP32_ONLY = {"activation": {"dtype": ["fp32"]}, "weight": {"dtype": ["fp32"]}}


def inc_api():
    """(quantization, config) modules of Neural Compressor 2.x, or MissingExtraError."""
    import importlib.util

    if importlib.util.find_spec("neural_compressor") is None:
        raise MissingExtraError("neural-compressor<3", "inc", "Intel Neural Compressor quantization (method 'inc')")
    try:
        from neural_compressor import config, quantization
    except ImportError as error:  # 2.x imports `six` without declaring it
        raise OptimError(f"neural_compressor is installed but cannot be imported ({error})",
                         fix=f"pip install {error.name or 'the missing module'}") from error
    if not hasattr(config, "PostTrainingQuantConfig"):  # 3.x: no ONNX Runtime back end
        raise MissingExtraError("neural-compressor<3", "inc", "INC quantization of ONNX models "
                                "(the installed neural-compressor 3.x has no ONNX Runtime back end)")
    return quantization, config


def path_evaluator(evaluate_onnx: Callable[[Path], float], workdir: Path) -> Callable[[object], float]:
    """Wrap `evaluate_onnx(path) -> mAP` so that it also accepts an in-memory onnx.ModelProto (what INC passes)."""

    def evaluate(model) -> float:
        if isinstance(model, (str, Path)):
            return float(evaluate_onnx(Path(model)))
        model = getattr(model, "model", model)  # INC's ONNXModel wraps the ModelProto
        import onnx

        with tempfile.TemporaryDirectory(prefix="inc-eval-", dir=workdir) as tmp:
            path = Path(tmp) / "candidate.onnx"
            onnx.save(model, str(path))
            return float(evaluate_onnx(path))

    return evaluate


def quantize_inc(onnx_path: Path, output_path: Path, step: QuantizeStep, batches: list[np.ndarray],
                 evaluate_onnx: Callable[[Path], float] | None) -> list[str]:
    """Accuracy-aware static INT8 (QDQ) with INC; writes `output_path` and returns notes for the report."""
    if evaluate_onnx is None:
        raise OptimError("quantize method 'inc' tunes against the evaluation metric, but no evaluation "
                         "function was supplied", field="steps.quantize.method",
                         fix="run it through `python -m optim.run` (it supplies BuildContext.evaluate_onnx)")
    quantization, config = inc_api()
    keep = {name: FP32_ONLY for name in nodes_in_blocks(onnx_path, step.keep_float)}
    conf = config.PostTrainingQuantConfig(
        approach="static", quant_format="QDQ", device="cpu", op_name_dict=keep or None,
        calibration_sampling_size=[sum(len(batch) for batch in batches)],
        accuracy_criterion=config.AccuracyCriterion(tolerable_loss=step.accuracy_tolerance, criterion="relative",
                                                    higher_is_better=True),
        tuning_criterion=config.TuningCriterion(max_trials=step.max_trials))
    try:
        quantized = quantization.fit(str(onnx_path), conf, calib_dataloader=LabelledBatches(batches),
                                     eval_func=path_evaluator(evaluate_onnx, output_path.parent))
    except Exception as error:  # INC raises bare Exceptions and adaptor errors of every kind
        raise OptimError(f"Neural Compressor tuning failed ({type(error).__name__}: {error})", path=onnx_path,
                         fix="use method ort_static, or keep_float the failing block") from error
    if quantized is None:  # also what INC returns when a trial raised (it logs the error and gives up)
        raise OptimError(f"Neural Compressor found no INT8 model within {step.accuracy_tolerance:.1%} relative "
                         f"mAP loss in {step.max_trials} trial(s)", field="steps.quantize.accuracy_tolerance",
                         fix="raise accuracy_tolerance or max_trials, or keep_float a sensitive block; an "
                             "'[ERROR] Unexpected exception' in the log above means tuning itself failed")
    quantized.save(str(output_path))
    return [(f"INC accuracy-aware static INT8 (QDQ), relative tolerance {step.accuracy_tolerance:.1%}, "
             f"at most {step.max_trials} trial(s)"), kept_float_note(quantized.model)]


def kept_float_note(model) -> str:
    """Which Conv/MatMul/Gemm ops the tuning (or keep_float) left in FP32, counted per DETR block."""
    kept = float_compute_nodes(model)
    if not kept:
        return "kept in FP32: none (every Conv/MatMul/Gemm runs int8)"
    by_block = Counter(f"{block_of_node(node.name) or 'other'} {node.op_type}" for node in kept)
    names = ", ".join(node.name for node in kept[:8]) + (" ..." if len(kept) > 8 else "")
    return f"kept in FP32: {len(kept)} op(s) ({', '.join(f'{k}: {v}' for k, v in sorted(by_block.items()))}): {names}"

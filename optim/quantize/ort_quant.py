"""ONNX Runtime's own quantizers (static QDQ, dynamic) and FP16 conversion, plus a summary of what a
quantized ONNX graph runs in int8."""

from __future__ import annotations

import contextlib
import platform
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from optim.errors import MissingExtraError, OptimError
from optim.models.blocks import node_units, resolve_keep_float
from optim.quantize.calibration import PixelValuesReader
from optim.spec import QuantizeStep

# Ops that ONNX Runtime's CPU and GPU providers run with int8 kernels (QLinearConv, QLinearMatMul,
# MatMulIntegerToFloat), plus int8 pass-through ops (ReLU fused into the conv, max-pool and reshapes on
# int8 tensors). Everything else stays float: quantizing LayerNorm, Softmax inputs, residual Adds or the
# position-embedding CumSum would only add Q/DQ pairs, and error, without an int8 kernel to gain speed.
STATIC_OP_TYPES = ["Conv", "MatMul", "Gemm", "Relu", "MaxPool", "Reshape", "Transpose", "Flatten", "Squeeze",
                   "Unsqueeze"]
CALIBRATION_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
# Histogram sizes: entropy searches KL-optimal thresholds over 512 bins with 128 quantized bins (TensorRT uses
# 2048; ORT's KL search is pure Python and 2048 bins take minutes); percentile clips at 99.999% of |x|.
CALIBRATOR_OPTIONS: dict[str, dict] = {"minmax": {}, "entropy": {"num_bins": 512, "num_quantized_bins": 128},
                                       "percentile": {"num_bins": 2048, "percentile": 99.999}}
# Integer kernels of the QOperator / dynamic formats, counted by their own op type.
INTEGER_OP_TYPES = {"MatMulInteger", "ConvInteger", "QGemm", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
                    "QAttention"}
# Nodes that convert between float and int8 (not compute).
QDQ_OP_TYPES = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
COMPUTE_OP_TYPES = {"Conv", "MatMul", "Gemm"}
# onnx.TensorProto FLOAT, DOUBLE, FLOAT16, BFLOAT16; 0 = undefined (unknown counts as float).
FLOAT_TYPES = {0, 1, 11, 10, 16}


def ort_quantization():
    """onnxruntime.quantization, or MissingExtraError."""
    try:
        from onnxruntime import quantization
    except ImportError as error:
        raise MissingExtraError("onnxruntime", "onnxruntime", "ONNX Runtime quantization") from error
    return quantization


def nodes_in_blocks(onnx_path: Path, keep_float: list[str]) -> list[str]:
    """Names of the graph's nodes in the given DETR blocks or units (see `optim.models.blocks`); a unit the
    graph lacks is an OptimError."""
    if not keep_float:
        return []
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    units = node_units(node.name for node in graph.node)
    kept = resolve_keep_float(keep_float, units.values())
    return [node.name for node in graph.node if units[node.name] in kept]


def preprocess(onnx_path: Path, output_path: Path) -> tuple[Path, str]:
    """ONNX Runtime's recommended pre-processing (shape inference + graph cleanup) before quantizing.

    Returns the model to quantize and a note; a model the pre-processor cannot handle is quantized as is."""
    quantization = ort_quantization()
    try:
        quantization.shape_inference.quant_pre_process(str(onnx_path), str(output_path))
    except Exception as error:  # noqa: BLE001 -- symbolic shape inference fails on some exported graphs
        return onnx_path, f"quant_pre_process skipped ({type(error).__name__}: {str(error)[:120]})"
    return output_path, "quant_pre_process applied (shape inference, graph cleanup)"


def has_vnni() -> bool:
    """Whether this x86 CPU has a VNNI int8 dot-product instruction (AVX512-VNNI, AVX-VNNI or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


def static_types(target_gpu: bool) -> tuple[str, str, bool, str]:
    """(activation type, weight type, reduce_range, why) for the hardware the model will run on.

    - GPU (CUDA / TensorRT): symmetric int8 activations and weights, the only form TensorRT accepts.
    - x86 CPU: uint8 activations with int8 weights (U8S8), the layout MLAS's int8 GEMMs and VNNI's
      VPDPBUSD (u8 x s8) are built for; asymmetric uint8 also uses the full range for post-ReLU and
      post-softmax tensors, which are non-negative. Without VNNI the AVX2 path (VPMADDUBSW) can saturate
      its int16 intermediate sums, so weights are reduced to 7 bits there (ORT's documented advice).
      Measured on synth-detr (128x128, AMD EPYC with AVX512-VNNI, 1 thread): U8S8 2.1 ms, S8S8 5.0 ms,
      FP32 2.8 ms, with the same output error: S8S8 activations have no fast x86 kernel.
    - ARM: symmetric int8 activations (ORT's advice for ARM kernels)."""
    if target_gpu:
        return "QInt8", "QInt8", False, "S8S8 symmetric (GPU / TensorRT)"
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "QInt8", "QInt8", False, "S8S8 (ARM CPU)"
    if has_vnni():
        return "QUInt8", "QInt8", False, "U8S8 (x86 CPU with VNNI)"
    return "QUInt8", "QInt8", True, "U8S8 with 7-bit weights (x86 CPU without VNNI: avoids int16 saturation)"


def calibrate(model_path: Path, batches: list[np.ndarray], method: str, cache_path: Path) -> Path:
    """Collect activation ranges with ONNX Runtime's calibrator and save them as a calibration cache.

    Calibrating here rather than inside `quantize_static` lets the histogram sizes be set: through
    `quantize_static`, entropy calibration uses 128 bins for 128 quantized bins, which leaves KL a single
    candidate threshold (the full range), i.e. the same ranges as minmax."""
    quantization = ort_quantization()
    with tempfile.TemporaryDirectory(prefix="optim-calib-") as tmp:
        calibrator = quantization.create_calibrator(
            Path(model_path), STATIC_OP_TYPES, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=getattr(quantization.CalibrationMethod, CALIBRATION_METHODS[method]),
            extra_options=CALIBRATOR_OPTIONS[method])
        calibrator.collect_data(PixelValuesReader(batches))
        quantization.save_tensors_data(calibrator.compute_data(), cache_path)
    return cache_path


def quantize_static_int8(onnx_path: Path, output_path: Path, step: QuantizeStep, batches: list[np.ndarray],
                         target_gpu: bool = False) -> list[str]:
    """Static INT8 (QDQ format) calibrated on `batches`; returns notes for the report."""
    quantization = ort_quantization()
    model_path, prep_note = preprocess(onnx_path, output_path.with_name(output_path.stem + ".prep.onnx"))
    activation, weight, reduce_range, why = static_types(target_gpu)
    excluded = nodes_in_blocks(model_path, step.keep_float)
    try:
        cache = calibrate(model_path, batches, step.calibration,
                          output_path.with_name(output_path.stem + ".calib.json"))
        quantization.quantize_static(
            str(model_path), str(output_path), None, quant_format=quantization.QuantFormat.QDQ,
            op_types_to_quantize=STATIC_OP_TYPES, per_channel=step.per_channel, reduce_range=reduce_range,
            activation_type=getattr(quantization.QuantType, activation),
            weight_type=getattr(quantization.QuantType, weight), nodes_to_exclude=excluded,
            calibrate_method=getattr(quantization.CalibrationMethod, CALIBRATION_METHODS[step.calibration]),
            calibration_cache_path=str(cache),
            extra_options={"ActivationSymmetric": activation == "QInt8", "WeightSymmetric": True})
    except Exception as error:  # ORT raises ValueError, RuntimeError, onnx errors...
        raise OptimError(f"ONNX Runtime static quantization failed ({type(error).__name__}: {error})",
                         path=model_path, fix="try calibration: minmax (percentile fails on near-constant "
                                              "tensors), per_channel: false, or keep_float blocks") from error
    return [prep_note, (f"static INT8 QDQ, {why}, {step.calibration} calibration on {len(batches)} batch(es), "
                        f"per_channel={step.per_channel}, {len(excluded)} node(s) kept float")]


def quantize_dynamic_int8(onnx_path: Path, output_path: Path, step: QuantizeStep) -> list[str]:
    """Dynamic INT8 of the MatMuls: int8 weights, activations quantized per batch at run time."""
    quantization = ort_quantization()
    model_path, prep_note = preprocess(onnx_path, output_path.with_name(output_path.stem + ".prep.onnx"))
    excluded = nodes_in_blocks(model_path, step.keep_float)
    try:
        # MatMul only: ORT's ConvInteger is slow on CPU (synth-detr, 1 thread: 17 ms with dynamic convs,
        # 5 ms MatMul-only, 6.7 ms FP32).
        quantization.quantize_dynamic(str(model_path), str(output_path), op_types_to_quantize=["MatMul"],
                                      per_channel=step.per_channel, weight_type=quantization.QuantType.QInt8,
                                      nodes_to_exclude=excluded)
    except Exception as error:
        raise OptimError(f"ONNX Runtime dynamic quantization failed ({type(error).__name__}: {error})",
                         path=model_path, fix="try per_channel: false, or keep_float blocks") from error
    return [prep_note, (f"dynamic INT8 MatMul (weights int8, activations per batch), "
                        f"per_channel={step.per_channel}, {len(excluded)} node(s) kept float")]


def convert_fp16(onnx_path: Path, output_path: Path, step: QuantizeStep) -> list[str]:
    """FP16 weights and compute with float32 inputs/outputs (for CUDA / TensorRT); keep_float blocks stay FP32."""
    import onnx

    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
        from onnxruntime.transformers.onnx_model import OnnxModel
    except ImportError as error:
        raise MissingExtraError("onnxruntime", "onnxruntime", "FP16 conversion of ONNX models") from error
    excluded = nodes_in_blocks(onnx_path, step.keep_float)
    model = OnnxModel(convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True,
                                               node_block_list=excluded))
    model.topological_sort()  # the converter appends the input Casts last, which onnx.checker rejects
    onnx.save(model.model, str(output_path))
    return [f"FP16 (float32 inputs/outputs), {len(excluded)} node(s) kept FP32"]


def quantized_nodes(model) -> list:
    """The nodes of an ONNX model that compute in int8: integer-kernel ops (QLinearConv, MatMulInteger, ...)
    and, in QDQ models, every node all of whose float inputs come from DequantizeLinear (the node units
    ONNX Runtime fuses into int8 kernels). Q/DQ nodes themselves are not counted."""
    producers = {output: node.op_type for node in model.graph.node for output in node.output}
    consumers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    types = _tensor_types(model)
    result = []
    for node in model.graph.node:
        if node.op_type in QDQ_OP_TYPES:
            continue
        if node.op_type.startswith("QLinear") or node.op_type in INTEGER_OP_TYPES:
            result.append(node)
            continue
        # An input of unknown type counts as float: a node is int8 only when that is certain.
        float_inputs = [name for name in node.input if name and types.get(name, 0) in FLOAT_TYPES]
        if not float_inputs or any(producers.get(name) != "DequantizeLinear" for name in float_inputs):
            continue
        # DQ -> op -> Q is a node unit ORT runs in int8; MatMul/Gemm also run int8 with a float output
        # (MatMulIntegerToFloat). A node merely reading a shared DQ output (Shape, Softmax...) stays float.
        outputs_quantized = all(consumers.get(name) and all(op == "QuantizeLinear" for op in consumers[name])
                                for name in node.output)
        if node.op_type in ("MatMul", "Gemm") or outputs_quantized:
            result.append(node)
    return result


def float_compute_nodes(model) -> list:
    """Conv / MatMul / Gemm nodes left in float (e.g. kept by keep_float or by accuracy-aware tuning)."""
    # Nodes are matched by their first output (unique in a graph): protobuf wrappers have no stable identity.
    quantized = {node.output[0] for node in quantized_nodes(model)}
    return [node for node in model.graph.node if node.op_type in COMPUTE_OP_TYPES and node.output[0] not in quantized]


def quantized_op_summary(onnx_path: Path) -> dict[str, int]:
    """Counts for the report: Q/DQ nodes by op type, and int8 compute nodes as 'int8 <op_type>'."""
    import onnx

    model = onnx.load(str(onnx_path))
    counts = Counter(node.op_type for node in model.graph.node if node.op_type in QDQ_OP_TYPES)
    counts.update(f"int8 {node.op_type}" for node in quantized_nodes(model))
    return dict(sorted(counts.items()))


def _tensor_types(model) -> dict[str, int]:
    """ONNX element type of every tensor whose type is known (inputs, initializers, constants, inferred)."""
    import onnx

    with contextlib.suppress(Exception):  # contrib ops or odd graphs: fall back to the declared types
        model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    types = {value.name: value.type.tensor_type.elem_type for value in [*graph.input, *graph.output, *graph.value_info]}
    types.update({tensor.name: tensor.data_type for tensor in graph.initializer})
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.name == "value":
                types[node.output[0]] = attr.t.data_type
    return types

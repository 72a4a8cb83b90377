"""ONNX Runtime engine on the tiny random DETR (64x64): FP32 parity, static / dynamic INT8, keep_float,
FP16 conversion, provider and file errors. Tolerances for quantized outputs are loose on purpose: they
catch a broken graph (wrong scales, swapped outputs), not the last 0.1% of accuracy."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from optim.engines.base import BuildContext
from optim.engines.onnx_export import PARITY_ATOL, torch_outputs
from optim.engines.onnxruntime_engine import OnnxRuntimeEngine, create_session, ort_module, run_session
from optim.errors import OptimError
from optim.models.blocks import block_of_node
from optim.quantize import ort_quant
from optim.quantize.calibration import calibration_batches
from optim.spec import EngineSpec, QuantizeStep

SIZE = (64, 64)
# Mean |quantized - FP32| allowed on raw outputs; observed ~0.001 for both, static and dynamic.
MEAN_ATOL = {"logits": 0.05, "pred_boxes": 0.05}


def build(model, tmp_path_factory, calibration, step: QuantizeStep | None, **spec):
    engine = OnnxRuntimeEngine(EngineSpec(kind="onnxruntime", **spec))
    context = BuildContext(workdir=tmp_path_factory.mktemp("ort"), input_size=SIZE, calibration=calibration, threads=1)
    return engine, engine.build(model, step, context)


@pytest.fixture(scope="module")
def fp32(model, tmp_path_factory, calibration):
    return build(model, tmp_path_factory, calibration, None)


@pytest.fixture(scope="module")
def fp32_outputs(fp32, images):
    return fp32[0].infer(images)


def mean_diffs(reference, other) -> dict[str, float]:
    return {name: float(np.abs(a - b).mean()) for name, a, b in zip(("logits", "pred_boxes"), reference, other)}


def test_fp32_matches_pytorch(model, fp32, images, fp32_outputs):
    engine, info = fp32
    for name, expected, got in zip(("logits", "pred_boxes"), torch_outputs(model, images), fp32_outputs):
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.abs(got - expected).max() <= PARITY_ATOL[name], name
    assert fp32_outputs[1].std() > 0.01  # boxes vary, so the INT8 comparisons below can fail
    assert info.artifact == engine.model_path and info.artifact.name == "model.onnx" and info.artifact.is_file()
    assert any(note.startswith("FP32 parity vs PyTorch on a calibration batch") for note in info.notes)
    assert ort_quant.quantized_op_summary(info.artifact) == {}


def test_dynamic_int8_is_close_and_quantized(model, tmp_path_factory, calibration, images, fp32_outputs):
    engine, info = build(model, tmp_path_factory, calibration, QuantizeStep(kind="quantize", method="ort_dynamic"))
    summary = ort_quant.quantized_op_summary(info.artifact)
    assert info.artifact.name == "model.int8-dynamic.onnx"
    assert summary.get("int8 MatMulInteger", 0) >= 10 and summary.get("DynamicQuantizeLinear", 0) > 0
    diffs = mean_diffs(fp32_outputs, engine.infer(images))
    assert all(diffs[name] < MEAN_ATOL[name] for name in diffs), diffs
    assert diffs["logits"] > 0  # it did change the computation


def test_static_int8_is_close_and_quantized(model, tmp_path_factory, calibration, images, fp32_outputs):
    engine, info = build(model, tmp_path_factory, calibration, QuantizeStep(kind="quantize", method="ort_static"))
    summary = ort_quant.quantized_op_summary(info.artifact)
    convs = sum(node.op_type == "Conv" for node in onnx.load(str(info.artifact)).graph.node)
    assert info.artifact.name == "model.int8.onnx" and engine.model_path == info.artifact
    assert summary["QuantizeLinear"] > 0 and summary["DequantizeLinear"] > 0
    assert summary["int8 Conv"] == convs and summary["int8 MatMul"] >= 10
    assert any(note.startswith("quantized ops: ") for note in info.notes)
    logits, boxes = engine.infer(images)
    assert logits.dtype == np.float32 and boxes.shape == fp32_outputs[1].shape
    diffs = mean_diffs(fp32_outputs, (logits, boxes))
    assert all(diffs[name] < MEAN_ATOL[name] for name in diffs), diffs


def test_keep_float_leaves_blocks_unquantized(fp32, calibration, tmp_path):
    step = QuantizeStep(kind="quantize", method="ort_static", keep_float=["decoder", "heads"])
    output = tmp_path / "model.int8.onnx"
    ort_quant.quantize_static_int8(fp32[0].model_path, output, step, calibration)
    quantized = onnx.load(str(output))
    blocks = {block_of_node(node.name) for node in ort_quant.quantized_nodes(quantized)}
    assert {"backbone", "encoder"} <= blocks and not blocks & {"decoder", "heads"}
    kept = {block_of_node(node.name) for node in ort_quant.float_compute_nodes(quantized)}
    assert {"decoder", "heads"} <= kept
    session = create_session(output, ["CPUExecutionProvider"], threads=1)
    assert np.isfinite(run_session(session, calibration[0])[0]).all()


def test_fp16_conversion_keeps_float32_io(fp32, images, fp32_outputs, tmp_path):
    output = tmp_path / "model.fp16.onnx"
    ort_quant.convert_fp16(fp32[0].model_path, output, QuantizeStep(kind="quantize", method="fp16"))
    types = {initializer.data_type for initializer in onnx.load(str(output)).graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types
    # ONNX Runtime's CPU provider can run it (slowly); the engine itself reserves fp16 for GPU providers.
    logits, boxes = run_session(create_session(output, ["CPUExecutionProvider"], threads=1), images)
    assert logits.dtype == np.float32
    assert np.abs(boxes - fp32_outputs[1]).max() < 1e-2 and np.abs(logits - fp32_outputs[0]).max() < 1e-2


def test_fp16_on_cpu_provider_is_refused(model, tmp_path):
    engine = OnnxRuntimeEngine(EngineSpec(kind="onnxruntime"))
    with pytest.raises(OptimError, match="GPU provider"):
        engine.build(model, QuantizeStep(kind="quantize", method="fp16"),
                     BuildContext(workdir=tmp_path, input_size=SIZE))


@pytest.mark.parametrize("providers, device, missing", [(["tensorrt"], "cpu", "TensorrtExecutionProvider"),
                                                       (["cpu"], "cuda", "CUDAExecutionProvider")])
def test_missing_provider_raises(model, tmp_path, providers, device, missing):
    if missing in ort_module().get_available_providers():
        pytest.skip(f"{missing} is installed here")
    engine = OnnxRuntimeEngine(EngineSpec(kind="onnxruntime", providers=providers, device=device))
    with pytest.raises(OptimError, match=rf"(?s)engine.providers.*{missing}.*not available.*onnxruntime-gpu"):
        engine.build(model, None, BuildContext(workdir=tmp_path, input_size=SIZE))
    assert not (tmp_path / "model.onnx").exists()  # failed before exporting


def test_corrupt_onnx_raises(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07this is not a protobuf" * 10)
    with pytest.raises(OptimError, match="corrupt or invalid ONNX"):
        create_session(path, ["CPUExecutionProvider"])


def test_static_without_calibration_raises(model, tmp_path):
    engine = OnnxRuntimeEngine(EngineSpec(kind="onnxruntime"))
    with pytest.raises(OptimError, match="calibration"):
        engine.build(model, QuantizeStep(kind="quantize", method="ort_static"),
                     BuildContext(workdir=tmp_path, input_size=SIZE, calibration=()))


def test_calibration_batches_validate_shape():
    batches = calibration_batches(iter([np.zeros((2, 3, 64, 64), np.float64)]), SIZE)
    assert len(batches) == 1 and batches[0].dtype == np.float32
    with pytest.raises(OptimError, match="calibration batch 0"):
        calibration_batches([np.zeros((2, 3, 32, 32), np.float32)], SIZE)

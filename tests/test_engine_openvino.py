"""OpenVINO engine on the tiny random DETR: FP32 parity with PyTorch, NNCF INT8 (with and without
blocks kept in float), BF16/FP16 capability handling, per-layer precisions and perf counters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from optim.engines.base import BuildContext
from optim.engines.onnx_export import torch_outputs
from optim.engines.openvino_engine import OpenVinoEngine, executed_precisions
from optim.errors import OptimError
from optim.models.blocks import block_of_node
from optim.models.zoo import load_model
from optim.quantize.nncf_quant import fake_quantize_consumers, node_blocks, quantize_nncf
from optim.spec import EngineSpec, QuantizeStep

SIZE = (64, 64)
# FP32 OpenVINO vs PyTorch: same math, different kernels and summation order (observed ~1e-7).
FP32_ATOL = {"logits": 1e-4, "pred_boxes": 1e-5}
# Lower precisions are compared with FP32 relative to the spread (std) of the FP32 outputs: the random tiny
# DETR has logits within +-0.3 (std ~0.13) and boxes that vary by only ~1e-4, so fixed absolute bounds
# would either pass anything or nothing. Observed: INT8 max error ~3% of std (mean ~1%), BF16 ~1%.
INT8_MAX_OF_STD, INT8_MEAN_OF_STD = 0.25, 0.05
BF16_MAX_OF_STD = 0.1


def _images(seed: int, batch: int) -> np.ndarray:
    """Preprocessed-looking images: ImageNet-normalized pixels are roughly standard normal."""
    return np.random.default_rng(seed).standard_normal((batch, 3, *SIZE)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_model("tiny-detr-arch").model


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return _images(seed=1, batch=2)


def _build(model, workdir, quantize: QuantizeStep | None = None, perf: bool = False) -> OpenVinoEngine:
    engine = OpenVinoEngine(EngineSpec(kind="openvino"))
    engine.enable_perf_counters = perf
    calibration = [_images(seed=10 + i, batch=2) for i in range(2)]
    engine.info = engine.build(model, quantize, BuildContext(workdir=workdir, input_size=SIZE,
                                                             calibration=calibration, threads=1))
    return engine


@pytest.fixture(scope="module")
def fp32(tiny, tmp_path_factory):
    engine = _build(tiny, tmp_path_factory.mktemp("ov_fp32"), perf=True)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def int8(tiny, tmp_path_factory):
    engine = _build(tiny, tmp_path_factory.mktemp("ov_int8"), QuantizeStep(kind="quantize", method="nncf"))
    yield engine
    engine.close()


def _block_precisions(compiled) -> dict[str, set[str]]:
    """Runtime precisions of the compute layers of each block, from the layers' original names."""
    result: dict[str, set[str]] = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) in ("FullyConnected", "Convolution", "MatMul"):
            block = block_of_node(info["originalLayersNames"].astype(str).split(",")[0])
            result.setdefault(block, set()).add(info["runtimePrecision"].astype(str))
    return result


def _assert_close(outputs, reference, atol: dict[str, float]) -> None:
    for name, got, want in zip(("logits", "pred_boxes"), outputs, reference):
        assert got.shape == want.shape and got.dtype == np.float32, name
        np.testing.assert_allclose(got, want, rtol=0, atol=atol[name], err_msg=name)


def _assert_close_relative(outputs, reference, max_of_std: float, mean_of_std: float | None = None,
                           resolution: float = 0.0) -> None:
    """Errors bounded relative to the FP32 outputs' spread, or by `resolution` x |value| where that is larger
    (a float format cannot do better than its own rounding of the values)."""
    for name, got, want in zip(("logits", "pred_boxes"), outputs, reference):
        assert got.shape == want.shape and got.dtype == np.float32, name
        error, spread = np.abs(got - want), float(want.std())
        bound = max(max_of_std * spread, resolution * float(np.abs(want).max()))
        assert error.max() <= bound, f"{name}: max error {error.max():.3g}, output std {spread:.3g}"
        if mean_of_std is not None:
            assert error.mean() <= mean_of_std * spread, f"{name}: mean error {error.mean():.3g}, std {spread:.3g}"


def test_fp32_matches_pytorch(fp32, tiny, pixels):
    _assert_close(fp32.infer(pixels), torch_outputs(tiny, pixels), FP32_ATOL)


def test_fp32_runs_in_fp32_and_writes_ir(fp32):
    # OpenVINO would pick bf16 by itself on BF16-capable CPUs; the engine pins f32.
    assert fp32.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    assert set(executed_precisions(fp32.compiled)) == {"f32"}
    artifact = fp32.info.artifact
    assert artifact.name == "model.xml" and artifact.stat().st_size > 0
    assert artifact.with_suffix(".bin").stat().st_size > 0


def test_dynamic_batch(fp32, tiny):
    for batch in (1, 3):
        images = _images(seed=2, batch=batch)
        logits, boxes = fp32.infer(images)
        assert logits.shape[0] == boxes.shape[0] == batch
        _assert_close((logits, boxes), torch_outputs(tiny, images), FP32_ATOL)


def test_repeated_calls_read_each_input_and_keep_earlier_outputs(fp32, tiny):
    # infer() reuses the request's buffers through numpy views taken once: each call must still see its own
    # input, earlier results must not change under later calls, and the views must still be the request's.
    first, second = _images(seed=3, batch=1), _images(seed=4, batch=1)
    kept = fp32.infer(first)
    for _ in range(3):
        later = fp32.infer(second)
    _assert_close(kept, torch_outputs(tiny, first), FP32_ATOL)
    _assert_close(later, torch_outputs(tiny, second), FP32_ATOL)
    request, pixels, outputs = fp32._io_for(tuple(first.shape))
    assert pixels.ctypes.data == request.get_input_tensor(0).data.ctypes.data
    assert [o.ctypes.data for o in outputs] == [request.get_tensor(n).data.ctypes.data for n in ("logits", "pred_boxes")]


def test_perf_counters(fp32, pixels):
    fp32.infer(pixels)
    executed = [p for p in fp32.request_for(pixels.shape).get_profiling_info() if p.status.name == "EXECUTED"]
    assert executed and any(p.node_type == "FullyConnected" for p in executed)


def test_int8_close_to_fp32_and_really_int8(int8, fp32, pixels):
    reference = fp32.infer(pixels)
    outputs = int8.infer(pixels)
    _assert_close_relative(outputs, reference, INT8_MAX_OF_STD, INT8_MEAN_OF_STD)
    assert not np.allclose(outputs[0], reference[0], atol=1e-5)  # quantization did change something
    assert len(fake_quantize_consumers(int8.ov_model)) > 0
    precisions = executed_precisions(int8.compiled)
    assert precisions.get("u8", 0) + precisions.get("i8", 0) > 0, precisions
    assert any("FakeQuantize" in note for note in int8.info.notes)


def test_keep_float_leaves_decoder_and_heads_unquantized(tiny, tmp_path, pixels, fp32):
    step = QuantizeStep(kind="quantize", method="nncf", keep_float=["decoder", "heads"])
    engine = _build(tiny, tmp_path, step)
    blocks = node_blocks(engine.ov_model)
    consumers = fake_quantize_consumers(engine.ov_model)
    assert consumers, "the backbone and encoder should still be quantized"
    for fq, readers in consumers.items():
        assert not {blocks.get(reader) for reader in readers} & {"decoder", "heads"}, fq
    by_block = _block_precisions(engine.compiled)
    assert by_block["decoder"] == {"f32"} and by_block["heads"] == {"f32"}
    assert by_block["encoder"] & {"u8", "i8"}
    _assert_close_relative(engine.infer(pixels), fp32.infer(pixels), INT8_MAX_OF_STD, INT8_MEAN_OF_STD)
    engine.close()


def test_nncf_needs_calibration_images(fp32):
    with pytest.raises(OptimError, match="calibration"):
        quantize_nncf(fp32.ov_model, QuantizeStep(kind="quantize", method="nncf"), [])


@pytest.mark.parametrize("method,capability", [("bf16", "BF16"), ("fp16", "FP16")])
def test_float_cast_runs_only_where_supported(method, capability, tiny, tmp_path, pixels, fp32):
    import openvino as ov

    step = QuantizeStep(kind="quantize", method=method)
    if capability not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        with pytest.raises(OptimError, match=f"no {capability} support"):
            _build(tiny, tmp_path, step)
        return
    engine = _build(tiny, tmp_path, step)
    assert set(executed_precisions(engine.compiled)) == {method.replace("fp", "f")}
    # The tiny model's boxes vary by ~1e-4 around ~0.5, below FP16's rounding there (2**-11 relative): on CPUs
    # with FP16 (AVX512-FP16 / AMX-FP16) the bound is a few units of that rounding.
    resolution = 4 * 2.0**-11 if method == "fp16" else 0.0
    _assert_close_relative(engine.infer(pixels), fp32.infer(pixels), BF16_MAX_OF_STD, resolution=resolution)
    engine.close()


def test_keep_float_with_float_cast_is_refused(tiny, tmp_path):
    step = QuantizeStep(kind="quantize", method="bf16", keep_float=["heads"])
    with pytest.raises(OptimError, match="keep_float"):
        _build(tiny, tmp_path, step)

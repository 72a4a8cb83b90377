"""GPU engines: TensorRT (FP32 / FP16 / INT8 / modelopt INT8 / FP8), Torch-TensorRT, PyTorch with CUDA graphs,
plan reuse, stage ranges in a CUDA profiler trace, and an end-to-end run, on the tiny random DETR (64x64).

The tests that need a GPU are in `TestOnGpu` (marker `gpu`; skipped without CUDA). On a CUDA machine with
the `gpu` extra installed: `python -m pytest tests/test_gpu.py -m gpu -v`. The module-level tests run
everywhere and check that a machine without the packages or the GPU gets a clear error.

Tolerances: FP32 is compared with PyTorch FP32 (CPU) as tightly as the ONNX Runtime engine is (TF32 is
disabled); FP16 within 1e-2 on boxes; INT8 / FP8 on mean |diff|, which catches a broken graph (wrong
scales, swapped outputs), not the last 0.1% of accuracy.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pydantic
import pytest
import torch

from optim.engines.base import BuildContext
from optim.engines.onnx_export import PARITY_ATOL, torch_outputs
from optim.engines.registry import check_available
from optim.engines.tensorrt_engine import (
    TensorRtEngine,
    TorchTensorRtEngine,
    batch_profiles,
    profile_for,
    require_cuda,
)
from optim.errors import MissingExtraError, OptimError
from optim.models.zoo import load_model
from optim.quantize.modelopt_quant import check_step, keep_float_patterns
from optim.spec import EngineSpec, QuantizeStep

SIZE = (64, 64)
BATCH_SIZES = (1, 3)
CUDA = torch.cuda.is_available()
FP16_ATOL = {"logits": 5e-2, "pred_boxes": 1e-2}
MEAN_ATOL = {"int8": 0.05, "fp8": 0.1}


def has(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def step(method: str, **options) -> QuantizeStep:
    return QuantizeStep(kind="quantize", method=method, **options)


def max_diffs(reference, other) -> dict[str, float]:
    return {name: float(np.abs(a - b).max()) for name, a, b in zip(("logits", "pred_boxes"), reference, other)}


def mean_diffs(reference, other) -> dict[str, float]:
    return {name: float(np.abs(a - b).mean()) for name, a, b in zip(("logits", "pred_boxes"), reference, other)}


# ---- everywhere: clear errors and the pure helpers ----------------------------------------------------------

@pytest.mark.skipif(has("tensorrt"), reason="tensorrt is installed here")
def test_tensorrt_without_the_package_names_the_gpu_extra(model, tmp_path):
    engine = TensorRtEngine(EngineSpec(kind="tensorrt", device="cuda"))
    with pytest.raises(MissingExtraError, match=r"'tensorrt'.*\n.*detr-optim-lab\[gpu\]"):
        engine.build(model, None, BuildContext(workdir=tmp_path, input_size=SIZE))
    with pytest.raises(MissingExtraError, match=r"detr-optim-lab\[gpu\]"):
        check_available(EngineSpec(kind="tensorrt", device="cuda"))


@pytest.mark.skipif(has("torch_tensorrt"), reason="torch_tensorrt is installed here")
def test_torch_tensorrt_without_the_package_names_the_gpu_extra(model, tmp_path):
    engine = TorchTensorRtEngine(EngineSpec(kind="torch_tensorrt", device="cuda"))
    with pytest.raises(MissingExtraError, match=r"'torch_tensorrt'.*\n.*detr-optim-lab\[gpu\]"):
        engine.build(model, step("fp16"), BuildContext(workdir=tmp_path, input_size=SIZE))


@pytest.mark.skipif(has("modelopt"), reason="modelopt is installed here")
def test_modelopt_without_the_package_names_the_gpu_extra(model, calibration):
    from optim.quantize.modelopt_quant import quantize_torch

    with pytest.raises(MissingExtraError, match=r"'nvidia-modelopt'.*\n.*detr-optim-lab\[gpu\]"):
        quantize_torch(model, step("modelopt_int8"), calibration)


@pytest.mark.skipif(CUDA, reason="this machine has a CUDA GPU")
def test_no_gpu_is_a_clear_error():
    with pytest.raises(OptimError, match="engine 'tensorrt' needs a CUDA GPU") as caught:
        require_cuda("tensorrt")
    assert "field 'engine.device'" in str(caught.value) and "fix:" in str(caught.value)


def test_batch_profiles_cover_every_batch_once():
    profiles = batch_profiles([8, 1, 4, 4])
    assert profiles == [(1, 1), (2, 4), (5, 8)]
    assert [profile_for(profiles, batch) for batch in range(1, 9)] == [0, 1, 1, 1, 2, 2, 2, 2]
    with pytest.raises(OptimError, match="batch 9 is larger than the largest batch"):
        profile_for(profiles, 9)


def test_onnx_export_is_byte_identical_so_saved_plans_can_be_reused(model, tmp_path):
    from optim.engines.onnx_export import export_onnx

    first, second = (export_onnx(model, tmp_path / name, SIZE).read_bytes() for name in ("a.onnx", "b.onnx"))
    assert first == second  # a saved plan's key holds the FP32 export's hash


def test_cuda_graphs_need_pytorch_on_cuda():
    assert EngineSpec(kind="pytorch", device="cuda", cuda_graphs=True).cuda_graphs
    for spec in ({"kind": "pytorch"}, {"kind": "torch_compile", "device": "cuda"}):
        with pytest.raises(pydantic.ValidationError, match="cuda_graphs needs kind: pytorch and device: cuda"):
            EngineSpec(cuda_graphs=True, **spec)


def test_keep_float_patterns_match_only_the_kept_block(model):
    patterns = keep_float_patterns(["heads"])
    # modelopt names quantizers after the module that owns them.
    names = [f"{name}.input_quantizer" for name, module in model.named_modules()
             if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))]
    kept = {name for name in names if any(fnmatch.fnmatch(name, p) for p in patterns)}
    assert kept and all(name.startswith(("class_labels_classifier", "bbox_predictor")) for name in kept)
    assert {name for name in names if name.startswith(("class_labels_classifier", "bbox_predictor"))} == kept


def test_modelopt_refuses_options_it_would_ignore():
    with pytest.raises(OptimError, match="calibration: entropy is not available"):
        check_step(step("modelopt_int8", calibration="entropy"))
    with pytest.raises(OptimError, match="per-channel"):
        check_step(step("modelopt_int8", per_channel=False))
    check_step(step("modelopt_fp8", per_channel=False))  # FP8 scales are per tensor anyway


def _input_types(graph) -> dict[str, int]:
    """ONNX element type of every tensor a node reads (after shape inference)."""
    infos = [*graph.value_info, *graph.input, *graph.output]
    types = {info.name: info.type.tensor_type.elem_type for info in infos}
    types.update({init.name: init.data_type for init in graph.initializer})
    return types


@pytest.mark.parametrize("method", ["fp16", "int8"])
def test_tensorrt_precision_graphs_keep_float_io_and_kept_blocks(method, model, calibration, tmp_path):
    """The graphs TensorRT builds strongly typed: FP16 casts or symmetric INT8 Q/DQ, never in the kept heads."""
    pytest.importorskip("onnxruntime")
    import onnx

    from optim.engines.onnx_export import export_onnx
    from optim.models.blocks import block_of_node

    fp32 = export_onnx(model, tmp_path / "model.onnx", SIZE)
    engine = TensorRtEngine(EngineSpec(kind="tensorrt", device="cuda"))
    path, notes = engine.precision_graph(model, fp32, step(method, keep_float=["heads"]), calibration,
                                         BuildContext(workdir=tmp_path, input_size=SIZE))
    assert path.name == f"model.{method}.onnx" and notes
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    float32 = onnx.TensorProto.FLOAT
    assert [i.type.tensor_type.elem_type for i in [*graph.input, *graph.output]] == [float32] * 3
    compute = [node for node in graph.node if node.op_type in ("Conv", "MatMul", "Gemm")]
    if method == "fp16":
        types = _input_types(graph)
        reads = {(block_of_node(node.name), types.get(node.input[0])) for node in compute}
        assert ("heads", float32) in reads and ("heads", onnx.TensorProto.FLOAT16) not in reads
        assert ("encoder", onnx.TensorProto.FLOAT16) in reads
    else:
        initializers = {init.name: init for init in graph.initializer}
        quantize = [node for node in graph.node if node.op_type == "QuantizeLinear"]
        assert {block_of_node(node.name) for node in quantize} >= {"backbone", "encoder", "decoder"}
        assert "heads" not in {block_of_node(node.name) for node in quantize}
        for node in quantize:  # TensorRT takes symmetric int8 only: zero point 0, type int8
            zero_point = onnx.numpy_helper.to_array(initializers[node.input[2]])
            assert zero_point.dtype == np.int8 and not zero_point.any(), node.name
        dequantized = {initializers[node.input[0]].data_type for node in graph.node
                       if node.op_type == "DequantizeLinear" and node.input[0] in initializers}
        assert dequantized == {onnx.TensorProto.INT8}  # int32 biases were folded back to float
        assert any("bias dequantization(s) folded" in note and not note.startswith("0 ") for note in notes)


@pytest.mark.parametrize("method, q_op", [("modelopt_int8", "QuantizeLinear"), ("modelopt_fp8", "TRT_FP8QuantizeLinear")])
def test_modelopt_qdq_export_leaves_kept_blocks_unquantized(method, q_op, model, calibration, images, tmp_path):
    """modelopt fake-quantizes on the CPU too, so the Q/DQ graph TensorRT receives is checked without a GPU."""
    pytest.importorskip("modelopt")
    import onnx

    from optim.engines.onnx_export import export_onnx
    from optim.models.blocks import block_of_node
    from optim.quantize.modelopt_quant import enabled_quantizers, quantize_torch

    quantized = quantize_torch(model, step(method, keep_float=["heads"]), calibration, device="cpu")
    assert set(enabled_quantizers(quantized)) == {"backbone", "encoder", "decoder"}
    diffs = mean_diffs(torch_outputs(model, images), torch_outputs(quantized, images))
    assert all(diff <= MEAN_ATOL[method.split("_")[1]] for diff in diffs.values()), diffs
    assert type(model.class_labels_classifier) is torch.nn.Linear  # the caller's model was not converted
    graph = onnx.load(str(export_onnx(quantized, tmp_path / "q.onnx", SIZE))).graph
    blocks = {block_of_node(node.name) for node in graph.node if node.op_type == q_op}
    assert blocks == {"backbone", "encoder", "decoder"}


# ---- on a CUDA GPU -------------------------------------------------------------------------------------------

def build(engine, model, workdir, calibration, quantize=None):
    context = BuildContext(workdir=workdir, input_size=SIZE, calibration=calibration, batch_sizes=BATCH_SIZES)
    return engine.build(model, quantize, context)


def tensorrt(model, workdir, calibration, quantize=None):
    engine = TensorRtEngine(EngineSpec(kind="tensorrt", device="cuda"))
    return engine, build(engine, model, workdir, calibration, quantize)




@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU; CI has none")
class TestOnGpu:
    @pytest.fixture(scope="class")
    def reference(self, model, images):
        return torch_outputs(model, images)

    @pytest.fixture(scope="class")
    def fp32(self, model, calibration, tmp_path_factory):
        pytest.importorskip("tensorrt")
        return tensorrt(model, tmp_path_factory.mktemp("trt-fp32"), calibration)

    def test_tensorrt_fp32_matches_pytorch_at_every_batch_size(self, fp32, images, reference):
        engine, info = fp32
        assert info.artifact == engine.plan_path and info.artifact.name == "model.fp32.plan" and not engine.reused_plan
        assert engine.profiles == [(1, 1), (2, 3)]
        for batch in (1, 2, 3):  # one profile, then the other (batch 2 runs on the profile tuned for 3)
            outputs = engine.infer(images[:batch])
            for name, expected, got in zip(("logits", "pred_boxes"), reference, outputs):
                assert got.dtype == np.float32 and got.shape == expected[:batch].shape
                assert np.abs(got - expected[:batch]).max() <= PARITY_ATOL[name], (name, batch)
        assert reference[1].std() > 0.01  # boxes vary, so the comparisons can fail
        with pytest.raises(OptimError, match="batch 4 is larger"):
            engine.infer(np.concatenate([images, images[:1]]))

    def test_saved_plan_is_reused_only_while_its_key_matches(self, model, calibration, images, tmp_path):
        pytest.importorskip("tensorrt")
        first, info = tensorrt(model, tmp_path, calibration)
        second, reused = tensorrt(model, tmp_path, calibration)
        assert not first.reused_plan and second.reused_plan and second.layers is None
        assert reused.build_seconds < info.build_seconds
        assert any(note.startswith("reused the saved plan model.fp32.plan") for note in reused.notes)
        assert (tmp_path / "tensorrt.timing-cache").stat().st_size > 0
        np.testing.assert_array_equal(first.infer(images)[0], second.infer(images)[0])
        changed = load_model("tiny-detr-arch").model.eval()  # other weights: another ONNX hash
        third, _ = tensorrt(changed, tmp_path, calibration)
        assert not third.reused_plan

    def test_tensorrt_fp16_within_tolerance_and_keeps_heads_in_fp32(self, model, calibration, images, reference,
                                                                     tmp_path_factory):
        pytest.importorskip("tensorrt")
        engine, info = tensorrt(model, tmp_path_factory.mktemp("trt-fp16"), calibration, step("fp16"))
        diffs = max_diffs(reference, engine.infer(images))
        assert all(diffs[name] <= FP16_ATOL[name] for name in diffs), diffs
        assert info.artifact.name == "model.fp16.plan"
        assert engine.layers["encoder"].get("fp16", 0) > 0 and engine.layers["heads"].get("fp16", 0) > 0
        kept, _ = tensorrt(model, tmp_path_factory.mktemp("trt-fp16-heads"), calibration,
                           step("fp16", keep_float=["heads"]))
        assert kept.layers["heads"].get("fp16", 0) == 0 and kept.layers["heads"].get("fp32", 0) > 0
        assert kept.layers["decoder"].get("fp16", 0) > 0

    @pytest.mark.parametrize("method", ["int8", "modelopt_int8", "modelopt_fp8"])
    def test_quantized_plans_track_fp32_and_keep_heads_unquantized(self, method, model, calibration, images,
                                                                   reference, tmp_path_factory):
        pytest.importorskip("tensorrt")
        if method.startswith("modelopt"):
            pytest.importorskip("modelopt")
        if method == "modelopt_fp8" and torch.cuda.get_device_capability() < (8, 9):
            pytest.skip("FP8 needs compute capability 8.9+")
        engine, info = tensorrt(model, tmp_path_factory.mktemp(method), calibration,
                                step(method, keep_float=["heads"]))
        diffs = mean_diffs(reference, engine.infer(images))
        tolerance = MEAN_ATOL["fp8" if method.endswith("fp8") else "int8"]
        assert all(diff <= tolerance for diff in diffs.values()), diffs
        assert engine.layers["encoder"].get("q", 0) > 0 and engine.layers["heads"].get("q", 0) == 0
        assert info.artifact.name == f"model.{'fp8' if method.endswith('fp8') else 'int8'}.plan"

    def test_torch_tensorrt_fp32_and_fp16(self, model, calibration, images, reference, tmp_path):
        pytest.importorskip("torch_tensorrt")
        for quantize, tolerance in ((None, PARITY_ATOL), (step("fp16"), FP16_ATOL)):
            engine = TorchTensorRtEngine(EngineSpec(kind="torch_tensorrt", device="cuda"))
            build(engine, model, tmp_path, calibration, quantize)
            diffs = max_diffs(reference, engine.infer(images))
            assert all(diffs[name] <= tolerance[name] for name in diffs), (quantize, diffs)
            engine.close()
        assert next(model.parameters()).device.type == "cpu"  # the caller's model was not moved

    def test_torch_tensorrt_int8(self, model, calibration, images, reference, tmp_path):
        pytest.importorskip("torch_tensorrt")
        pytest.importorskip("modelopt")
        engine = TorchTensorRtEngine(EngineSpec(kind="torch_tensorrt", device="cuda"))
        info = build(engine, model, tmp_path, calibration, step("int8", keep_float=["heads"]))
        diffs = mean_diffs(reference, engine.infer(images))
        assert all(diff <= MEAN_ATOL["int8"] for diff in diffs.values()), diffs
        assert "'heads'" not in info.notes[0]  # no enabled quantizer in the kept block

    def test_pytorch_cuda_graphs_replay_matches_eager(self, model, calibration, images, tmp_path):
        from optim.engines.pytorch_engine import PyTorchEngine

        on_gpu = copy.deepcopy(model)  # the PyTorch engine moves the model it is given
        eager = PyTorchEngine(EngineSpec(kind="pytorch", device="cuda"))
        build(eager, on_gpu, tmp_path, calibration)
        graphs = PyTorchEngine(EngineSpec(kind="pytorch", device="cuda", cuda_graphs=True))
        build(graphs, on_gpu, tmp_path, calibration)
        for batch in (images[:1], images, images[1:2]):  # new shape, new shape, then a replay with new data
            for expected, got in zip(eager.infer(batch), graphs.infer(batch)):
                np.testing.assert_allclose(got, expected, atol=1e-5)
        assert set(graphs.graphs) == {(1, 3, *SIZE), (3, 3, *SIZE)}

    def test_stage_ranges_appear_in_a_cuda_profiler_trace(self, model, calibration, images, tmp_path):
        from optim.engines.pytorch_engine import PyTorchEngine
        from profiling.nvtx_ranges import instrument_detr, ranges_enabled

        engine = PyTorchEngine(EngineSpec(kind="pytorch", device="cuda"))
        build(engine, copy.deepcopy(model), tmp_path, calibration)
        hooks = instrument_detr(engine.model)
        activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        try:
            with ranges_enabled(nvtx=True), torch.profiler.profile(activities=activities) as profiler:
                engine.infer(images)
                torch.cuda.synchronize()
        finally:
            hooks.remove()
        trace = tmp_path / "trace.json"
        profiler.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
        labels = {event.get("name") for event in events if event.get("cat") == "user_annotation"}
        assert {"backbone", "encoder", "decoder", "heads"} <= labels
        assert any(event.get("cat") == "kernel" for event in events)  # GPU kernels were recorded

    def test_end_to_end_run_on_gpu(self, tiny_dataset_root, tmp_path):
        pytest.importorskip("tensorrt")
        spec = tmp_path / "gpu.yaml"
        spec.write_text(f"""
name: gpu-e2e
model: tiny-detr-arch
data: {{dataset: synthetic, root: {tiny_dataset_root}, eval_images: 8, calibration_split: val, calibration_images: 4}}
batch_sizes: [1, 2]
eval_batch_size: 4
latency: {{warmup_iters: 2, min_iters: 5, max_iters: 20, max_seconds: 1}}
profile: {{stages: false}}
output_dir: reports
variants:
  - {{name: pytorch-fp32, engine: {{kind: pytorch, device: cuda}}}}
  - {{name: pytorch-fp16-graphs, steps: [{{kind: quantize, method: fp16}}],
      engine: {{kind: pytorch, device: cuda, cuda_graphs: true}}}}
  - {{name: tensorrt-fp16, steps: [{{kind: quantize, method: fp16}}], engine: {{kind: tensorrt, device: cuda}}}}
  - {{name: tensorrt-int8, steps: [{{kind: quantize, method: int8, keep_float: [heads]}}],
      engine: {{kind: tensorrt, device: cuda}}}}
""")
        result = subprocess.run([sys.executable, "-m", "optim.run", str(spec)], capture_output=True, text=True,
                                timeout=900, check=False, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        results = json.loads((tmp_path / "reports" / "gpu-e2e" / "results.json").read_text())
        for variant in results["variants"]:
            assert variant["status"] == "ok", (variant["name"], variant.get("error"))
            assert set(variant["latency"]) == {"1", "2"} and variant["accuracy"]["images"] == 8
            assert any(note.startswith("peak CUDA memory allocated through PyTorch") for note in variant["notes"])
        gpu = results["environment"]["gpu"]
        assert gpu["name"] and gpu["driver"] and gpu["clocks"]

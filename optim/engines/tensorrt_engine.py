"""TensorRT engines (CUDA only).

`TensorRtEngine` exports the model to ONNX, writes the precision into the graph, and has TensorRT build a
strongly typed plan from it. TensorRT 11 removed the builder precision flags (FP16, INT8, FP8), the INT8
calibrators and the per-layer precision constraints; 10.x builds strongly typed networks too, so this one
path serves both. The precision of each quantize method:

    (none)         the FP32 graph, with TF32 disabled so that FP32 means FP32
    fp16           FP16 graph with float32 inputs/outputs (ONNX Runtime's converter); keep_float blocks stay FP32
    int8           INT8 Q/DQ graph calibrated by ONNX Runtime (minmax / entropy / percentile), symmetric int8
                   activations and weights, the only form TensorRT accepts; keep_float blocks get no Q/DQ
    modelopt_int8  INT8 Q/DQ from NVIDIA Model Optimizer, calibrated in PyTorch on CUDA
    modelopt_fp8   FP8 Q/DQ from Model Optimizer (compute capability 8.9+: Ada, Hopper, Blackwell)

Layers without Q/DQ run in the graph's float type. The serialized plan is saved as `model.<precision>.plan`
beside a key (FP32 ONNX hash, quantize step, calibration data hash, shape profiles, TensorRT version, GPU) and
reused while the key matches; kernel timings go to a timing cache shared by later builds in the same folder.
Each measured batch size gets its own optimization profile and execution context, so it runs kernels tuned
for it. Inference uses torch CUDA tensors as I/O buffers on the current torch stream.

`TorchTensorRtEngine` compiles with Torch-TensorRT's dynamo path (torch.export, then TensorRT), FP16 through
its autocast, INT8 through Model Optimizer's Q/DQ.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from optim.engines.base import BuildContext, BuildInfo, Engine
from optim.engines.onnx_export import OUTPUT_NAMES, RawOutputs, export_onnx
from optim.errors import MissingExtraError, OptimError
from optim.models.blocks import block_of_node
from optim.quantize.calibration import INPUT_NAME, calibration_batches, require_batches
from optim.spec import QuantizeStep

# quantize.method -> the precision named in the plan's file name
PRECISIONS = {None: "fp32", "fp16": "fp16", "int8": "int8", "modelopt_int8": "int8", "modelopt_fp8": "fp8"}
CALIBRATED = {"int8", "modelopt_int8", "modelopt_fp8"}
FP8_CAPABILITY = (8, 9)
TIMING_CACHE = "tensorrt.timing-cache"
# Layers that do the arithmetic; the data type they read shows where FP16 really runs.
COMPUTE_LAYERS = ("CONVOLUTION", "MATRIX_MULTIPLY")
DTYPE_NAMES = {"FLOAT": "fp32", "HALF": "fp16", "BF16": "bf16", "INT8": "int8", "FP8": "fp8"}


def import_tensorrt():
    """The `tensorrt` module, or MissingExtraError naming the `gpu` extra."""
    try:
        import tensorrt
    except ImportError as error:
        raise MissingExtraError("tensorrt", "gpu", "the TensorRT engine") from error
    return tensorrt


@functools.cache
def trt_logger():
    """One TensorRT logger for the process (TensorRT keeps the first logger it is given), warnings and errors."""
    trt = import_tensorrt()
    return trt.Logger(trt.Logger.WARNING)


def import_torch_tensorrt():
    """The `torch_tensorrt` module, or MissingExtraError naming the `gpu` extra."""
    try:
        import torch_tensorrt
    except ImportError as error:
        raise MissingExtraError("torch_tensorrt", "gpu", "the Torch-TensorRT engine") from error
    return torch_tensorrt


def require_cuda(kind: str) -> torch.device:
    """The CUDA device, or OptimError when torch sees no CUDA GPU."""
    if not torch.cuda.is_available():
        raise OptimError(f"engine '{kind}' needs a CUDA GPU, and torch sees none", field="engine.device",
                         fix="run on a machine with an NVIDIA GPU and a CUDA build of torch, or use a CPU engine")
    return torch.device("cuda")


def require_fp8() -> None:
    """OptimError unless the GPU has FP8 tensor cores (compute capability 8.9+)."""
    capability = torch.cuda.get_device_capability()
    if capability < FP8_CAPABILITY:
        raise OptimError(f"FP8 needs compute capability 8.9+ (Ada, Hopper, Blackwell); "
                         f"{torch.cuda.get_device_name()} has {capability[0]}.{capability[1]}",
                         field="steps.quantize.method", fix="use modelopt_int8 or fp16 on this GPU")


def batch_profiles(batch_sizes: Iterable[int]) -> list[tuple[int, int]]:
    """(min, max) batch of each optimization profile: one per distinct batch size, tuned for its max, together
    covering 1..largest. [1, 4, 8] -> [(1, 1), (2, 4), (5, 8)]."""
    sizes = sorted(set(batch_sizes))
    return [(low + 1, high) for low, high in zip([0, *sizes[:-1]], sizes)]


def profile_for(profiles: list[tuple[int, int]], batch: int) -> int:
    """Index of the profile whose batch range holds `batch`."""
    for index, (low, high) in enumerate(profiles):
        if low <= batch <= high:
            return index
    raise OptimError(f"batch {batch} is larger than the largest batch the TensorRT plan was built for "
                     f"({profiles[-1][1]})", field="batch_sizes",
                     fix="list it in batch_sizes (or eval_batch_size), so that the plan covers it")


def _sha256(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def plan_key(trt, onnx_path: Path, step: QuantizeStep | None, batches: list[np.ndarray],
             profiles: list[tuple[int, int]], input_size: tuple[int, int]) -> dict:
    """Everything a saved plan depends on; a plan is reused only when its saved key equals this one."""
    properties = torch.cuda.get_device_properties(0)
    with open(onnx_path, "rb") as file:
        onnx_sha256 = _sha256(iter(lambda: file.read(1 << 20), b""))
    calibrated = step is not None and step.method in CALIBRATED
    key = {"onnx_sha256": onnx_sha256, "quantize": step.model_dump(mode="json") if step else None,
           "calibration_sha256": _sha256(b.tobytes() for b in batches) if calibrated else None,
           "profiles": profiles, "input_size": input_size, "tensorrt": trt.__version__,
           "gpu": properties.name, "compute_capability": f"{properties.major}.{properties.minor}"}
    return json.loads(json.dumps(key))  # tuples become lists, as in the saved JSON


def saved_key(path: Path) -> dict | None:
    """The key saved beside a plan, or None (missing or unreadable: the plan is rebuilt)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def layer_summary(trt, network) -> dict[str, dict[str, int]]:
    """Per DETR block ("other" outside them): convolutions and matrix products by the data type they read in
    the graph, and quantize layers ("q"). Shows where FP16 and Q/DQ are, and that keep_float blocks have
    none; TensorRT fuses each DQ -> conv/matmul into an INT8 or FP8 kernel when it builds."""
    compute = {getattr(trt.LayerType, name) for name in COMPUTE_LAYERS}
    summary: dict[str, dict[str, int]] = {}
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if layer.type == trt.LayerType.QUANTIZE:
            kind = "q"
        elif layer.type in compute:
            kind = DTYPE_NAMES.get(layer.get_input(0).dtype.name, layer.get_input(0).dtype.name.lower())
        else:
            continue
        counts = summary.setdefault(block_of_node(layer.name) or "other", {})
        counts[kind] = counts.get(kind, 0) + 1
    return summary


def fold_int32_dequantize(onnx_path: Path) -> int:
    """Replace every DequantizeLinear of a constant 1-D int32 tensor (ONNX Runtime quantizes convolution biases
    to int32) by its float value, in place; returns how many. TensorRT dequantizes int8 and fp8 tensors only,
    and keeps biases in float in its INT8 kernels anyway."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    folded = []
    for node in graph.node:
        source = initializers.get(node.input[0])
        if node.op_type != "DequantizeLinear" or source is None or source.data_type != onnx.TensorProto.INT32:
            continue
        values = numpy_helper.to_array(source).astype(np.float64)
        scale = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float64)
        zero = numpy_helper.to_array(initializers[node.input[2]]) if len(node.input) > 2 and node.input[2] else 0
        if values.ndim != 1:
            continue
        graph.initializer.append(numpy_helper.from_array(((values - zero) * scale).astype(np.float32), node.output[0]))
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for name in {name for node in folded for name in node.input} - used:  # the int32 values, scales, zero points
        graph.initializer.remove(initializers[name])
    onnx.save(model, str(onnx_path))
    return len(folded)


def build_plan(trt, onnx_path: Path, profiles: list[tuple[int, int]], input_size: tuple[int, int],
               timing_cache: Path, tf32: bool) -> tuple[bytes, dict[str, dict[str, int]]]:
    """Parse `onnx_path` into a strongly typed network and build it; returns (serialized plan, layer_summary).

    `timing_cache` is read if it exists and rewritten with this build's kernel timings."""
    logger = trt_logger()
    builder = trt.Builder(logger)
    # Strongly typed: every layer runs in the type the graph gives it (TensorRT 11 accepts the flag and
    # builds strongly typed networks regardless).
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(min(parser.num_errors, 3)))
        raise OptimError(f"TensorRT cannot parse the ONNX model: {errors}", path=onnx_path,
                         fix="try another engine.opset or quantize method")
    config = builder.create_builder_config()
    if not tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    height, width = input_size
    for low, high in profiles:
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, (low, 3, height, width), (high, 3, height, width), (high, 3, height, width))
        config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)  # a cache from another GPU is ignored, not trusted
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise OptimError("TensorRT could not build an engine (its log above says why)", path=onnx_path,
                         fix="check free GPU memory, or try another quantize method or engine.opset")
    timing_cache.write_bytes(memoryview(config.get_timing_cache().serialize()))
    return bytes(plan), layer_summary(trt, network)


class TensorRtEngine(Engine):
    """A strongly typed TensorRT plan built from ONNX. Public after build: `plan_path`, `reused_plan` (True
    when the saved plan was loaded instead of built) and `layers` (`layer_summary`; None for a reused plan)."""

    kind = "tensorrt"

    def __init__(self, spec):
        super().__init__(spec)
        self.engine = None
        self.contexts: list = []
        self.profiles: list[tuple[int, int]] = []
        self.reused_plan = False
        self.layers: dict[str, dict[str, int]] | None = None

    def build(self, model, quantize: QuantizeStep | None, context: BuildContext) -> BuildInfo:
        start = time.perf_counter()
        trt = import_tensorrt()
        self.device = require_cuda(self.kind)
        method = quantize.method if quantize else None
        if method not in PRECISIONS:
            raise OptimError(f"quantize method '{method}' cannot run on engine 'tensorrt'",
                             field="steps.quantize.method", fix="use fp16, int8, modelopt_int8 or modelopt_fp8")
        if method == "modelopt_fp8":
            require_fp8()
        workdir = Path(context.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        batches = calibration_batches(context.calibration, context.input_size)
        if method in CALIBRATED:
            require_batches(batches, method)
        self.profiles = batch_profiles(context.batch_sizes)
        fp32_path = export_onnx(model, workdir / "model.onnx", context.input_size, self.spec.opset)
        key = plan_key(trt, fp32_path, quantize, batches, self.profiles, context.input_size)
        self.plan_path = workdir / f"model.{PRECISIONS[method]}.plan"
        key_path = self.plan_path.with_name(self.plan_path.name + ".json")
        self.reused_plan = self.plan_path.is_file() and saved_key(key_path) == key
        if self.reused_plan:
            self.layers = None
            notes = [(f"reused the saved plan {self.plan_path.name} (same ONNX, quantize step, calibration data, "
                      "batch profiles, TensorRT version and GPU)")]
        else:
            onnx_path, notes = self.precision_graph(model, fp32_path, quantize, batches, context)
            plan, self.layers = build_plan(trt, onnx_path, self.profiles, context.input_size, workdir / TIMING_CACHE,
                                           tf32=method is not None)
            key_path.unlink(missing_ok=True)  # no key beside a half-written plan
            self.plan_path.write_bytes(plan)
            key_path.write_text(json.dumps(key, indent=1))
            notes.append(f"compute layers by the type they read, and quantize layers (q), per block: {self.layers}")
        self._load(trt)
        notes.append(f"TensorRT {trt.__version__}, strongly typed, on {torch.cuda.get_device_name()}; "
                     f"batch profiles {self.profiles}; activation memory "
                     f"{self.engine.device_memory_size_v2 / 2**20:.0f} MiB per execution context")
        return BuildInfo(build_seconds=time.perf_counter() - start, artifact=self.plan_path, notes=notes)

    def precision_graph(self, model, fp32_path: Path, step: QuantizeStep | None, batches: list[np.ndarray],
                        context: BuildContext) -> tuple[Path, list[str]]:
        """The ONNX model whose graph carries the precision to build (FP32 export, FP16 casts or Q/DQ nodes),
        and notes on how it was made. Needs no GPU, except for the modelopt methods (calibrated on CUDA)."""
        if step is None:
            return fp32_path, ["FP32 (TF32 disabled)"]
        output = fp32_path.with_name(f"model.{step.method}.onnx")
        if step.method == "fp16":
            from optim.quantize.ort_quant import convert_fp16

            return output, convert_fp16(fp32_path, output, step)
        if step.method == "int8":
            from optim.quantize.ort_quant import quantize_static_int8

            notes = quantize_static_int8(fp32_path, output, step, batches, target_gpu=True)
            folded = fold_int32_dequantize(output)
            return output, [*notes, f"{folded} int32 bias dequantization(s) folded to float for TensorRT"]
        from optim.quantize.modelopt_quant import quantize_to_onnx

        return output, quantize_to_onnx(model, step, batches, output, context.input_size, self.spec.opset)

    def _load(self, trt) -> None:
        """Deserialize the plan and make one execution context per optimization profile."""
        self.runtime = trt.Runtime(trt_logger())
        self.engine = self.runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if self.engine is None:
            raise OptimError("TensorRT cannot load the plan (see its log above)", path=self.plan_path,
                             fix="delete the .plan file so that it is built again")
        # Inputs and outputs stay float32 in every graph built here (FP16 conversion keeps I/O types).
        dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        self.dtypes = {name: dtypes[self.engine.get_tensor_dtype(name)] for name in (INPUT_NAME, *OUTPUT_NAMES)}
        stream = torch.cuda.current_stream()
        self.contexts = []
        for index in range(len(self.profiles)):
            execution = self.engine.create_execution_context()
            execution.set_optimization_profile_async(index, stream.cuda_stream)
            self.contexts.append(execution)
        stream.synchronize()

    def infer(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.engine is None:
            raise RuntimeError("TensorRtEngine.infer called before build() or after close()")
        execution = self.contexts[profile_for(self.profiles, len(pixel_values))]
        inputs = torch.from_numpy(np.ascontiguousarray(pixel_values)).to(self.device, self.dtypes[INPUT_NAME])
        execution.set_input_shape(INPUT_NAME, tuple(inputs.shape))
        execution.set_tensor_address(INPUT_NAME, inputs.data_ptr())
        outputs = []
        for name in OUTPUT_NAMES:
            output = torch.empty(tuple(execution.get_tensor_shape(name)), dtype=self.dtypes[name], device=self.device)
            execution.set_tensor_address(name, output.data_ptr())
            outputs.append(output)
        if not execution.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed (see its log above)")
        # .cpu() waits for the stream, so `inputs` and `outputs` outlive the kernels that use them.
        return tuple(output.float().cpu().numpy() for output in outputs)

    def close(self) -> None:
        self.contexts = []
        self.engine = None
        self.runtime = None


class TorchTensorRtEngine(Engine):
    """Torch-TensorRT (dynamo): dynamic batch 1..largest, tuned for the smallest batch size above 1 (torch.export
    cannot trace a dynamic batch from an example of 1). Public after build: `module`, the compiled module."""

    kind = "torch_tensorrt"
    module = None

    def build(self, model, quantize: QuantizeStep | None, context: BuildContext) -> BuildInfo:
        start = time.perf_counter()
        torch_tensorrt = import_torch_tensorrt()
        self.device = require_cuda(self.kind)
        method = quantize.method if quantize else None
        if method not in (None, "fp16", "int8"):
            raise OptimError(f"quantize method '{method}' cannot run on engine 'torch_tensorrt'",
                             field="steps.quantize.method", fix="use fp16 or int8, or engine kind tensorrt")
        if method == "fp16" and quantize.keep_float:
            raise OptimError("keep_float is not supported by torch_tensorrt fp16: Torch-TensorRT's autocast "
                             "matches excluded nodes by lowered-graph names, which carry no module path",
                             field="steps.quantize.keep_float",
                             fix="use engine kind tensorrt, which keeps the blocks in FP32, or drop keep_float")
        settings: dict = {"use_explicit_typing": True}  # strongly typed: precision comes from the graph
        tracing = contextlib.nullcontext()
        if method == "int8":
            from optim.quantize.modelopt_quant import enabled_quantizers, export_context, quantize_torch

            detr = quantize_torch(model, quantize, calibration_batches(context.calibration, context.input_size))
            tracing = export_context()
            notes = [f"modelopt INT8 Q/DQ (max calibration); enabled quantizers by block: {enabled_quantizers(detr)}"]
        else:
            detr = copy.deepcopy(model).to(self.device).eval()
            if method == "fp16":
                settings.update(enable_autocast=True, autocast_low_precision_type=torch.float16)
                notes = ["FP16 through Torch-TensorRT autocast (its rules keep overflow-prone ops in FP32)"]
            else:
                settings["disable_tf32"] = True
                notes = ["FP32 (TF32 disabled)"]
        height, width = context.input_size
        largest = max(context.batch_sizes)
        if largest == 1:
            inputs = [torch_tensorrt.Input(shape=(1, 3, height, width), dtype=torch.float32)]
            tuned = 1
        else:
            # torch.export traces an example of the opt shape, and a batch of 1 would specialize the graph to 1.
            tuned = min(size for size in context.batch_sizes if size > 1)
            inputs = [torch_tensorrt.Input(min_shape=(1, 3, height, width), opt_shape=(tuned, 3, height, width),
                                           max_shape=(largest, 3, height, width), dtype=torch.float32)]
        with torch.no_grad(), tracing:
            self.module = torch_tensorrt.compile(RawOutputs(detr), ir="dynamo", inputs=inputs, **settings)
        notes.append(f"Torch-TensorRT {torch_tensorrt.__version__}, batch 1..{largest} tuned for {tuned}, "
                     f"on {torch.cuda.get_device_name()}")
        return BuildInfo(build_seconds=time.perf_counter() - start, notes=notes)

    def infer(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.module is None:
            raise RuntimeError("TorchTensorRtEngine.infer called before build() or after close()")
        inputs = torch.from_numpy(np.ascontiguousarray(pixel_values, dtype=np.float32)).to(self.device)
        with torch.no_grad():
            logits, boxes = self.module(inputs)
        return logits.float().cpu().numpy(), boxes.float().cpu().numpy()

    def close(self) -> None:
        self.module = None

"""OpenVINO on CPU: PyTorch (or ONNX) -> OpenVINO model, optionally NNCF INT8 or a BF16/FP16 inference
precision, saved as IR (model.xml + model.bin) and compiled for latency at each input shape it sees."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection
from pathlib import Path

import numpy as np

from optim.engines.base import BuildContext, BuildInfo, Engine
from optim.engines.onnx_export import OUTPUT_NAMES, PARITY_ATOL, RawOutputs, export_onnx, max_abs_diff, torch_outputs
from optim.errors import MissingExtraError, OptimError
from optim.fingerprint import model_identity
from optim.spec import QuantizeStep

# The layers that do the arithmetic; their runtime precision tells whether a quantization really ran.
COMPUTE_LAYER_TYPES = ("Convolution", "FullyConnected", "MatMul")
# quantize.method -> (OpenVINO inference precision, the CPU capability it needs)
FLOAT_CASTS = {"fp16": ("f16", "FP16"), "bf16": ("bf16", "BF16")}
# The last float model converted from PyTorch, keyed by the model's identity and the input size.
_CONVERTED: dict[tuple, object] = {}


def _import_openvino():
    try:
        import openvino
    except ImportError as error:
        raise MissingExtraError("openvino", "openvino", "the OpenVINO engine") from error
    return openvino


def executed_precisions(compiled_model, layer_types: Collection[str] | None = COMPUTE_LAYER_TYPES) -> dict[str, int]:
    """How many runtime layers of `compiled_model` run at each precision ({"u8": 19, "f32": 8, ...}).

    Read from the runtime (executable) graph's `runtimePrecision` rt_info, which the CPU plugin fills
    at compile time, so no inference and no PERF_COUNT are needed. `layer_types` restricts the count
    to those runtime layer types (default: convolutions and matrix products); None counts every layer
    that executes (constants, inputs and outputs excluded)."""
    counts: Counter[str] = Counter()
    for op in compiled_model.get_runtime_model().get_ops():
        info = op.get_rt_info()
        layer_type = info["layerType"].astype(str)
        if layer_type in ("Const", "Input", "Output") or (layer_types is not None and layer_type not in layer_types):
            continue
        counts[info["runtimePrecision"].astype(str)] += 1
    return dict(sorted(counts.items()))


class OpenVinoEngine(Engine):
    """OpenVINO CPU plugin. Public after build: `ov_model` (dynamic batch), `compiled` (the batch-1 model as
    `infer` runs it, for its properties and runtime precisions) and `request_for(shape)` (the request `infer`
    uses for an input shape).

    Set `enable_perf_counters = True` before `build` to compile with PERF_COUNT, so that
    `request_for(shape).get_profiling_info()` gives per-layer times (it slows inference: never time with it)."""

    kind = "openvino"

    def __init__(self, spec):
        super().__init__(spec)
        self.enable_perf_counters = False
        self.ov_model = None
        self._core = None
        self._compile_config: dict = {}
        self._requests: dict[tuple[int, ...], tuple] = {}  # input shape -> (request, input view, output views)
        self.precision: str | None = None  # the inference precision compiled with (f32, bf16, f16)

    def build(self, model, quantize: QuantizeStep | None, context: BuildContext) -> BuildInfo:
        start = time.perf_counter()
        ov = _import_openvino()
        core = ov.Core()
        method = quantize.method if quantize else None
        precision = self._inference_precision(core, quantize)  # checked first: fail before the slow steps
        ov_model = self._convert(ov, model, context)
        notes = [f"converted from {'PyTorch (ov.convert_model)' if self.spec.openvino_source == 'pytorch' else 'ONNX'}"]
        if method == "nncf":
            from optim.quantize.nncf_quant import fake_quantize_consumers, quantize_nncf

            ov_model = quantize_nncf(ov_model, quantize, context.calibration)
            kept = ", ".join(quantize.keep_float) or "none"
            notes.append(f"NNCF INT8 (MIXED preset, transformer mode): {len(fake_quantize_consumers(ov_model))} "
                         f"FakeQuantize ops; blocks kept in float: {kept}")
        artifact = context.workdir / "model.xml"
        # compress_to_fp16=False: the IR keeps FP32 weights, so the file size is the honest FP32/INT8 size.
        ov.save_model(ov_model, str(artifact), compress_to_fp16=False)
        # Scored and timed from the saved IR, the file a deployment runs: saving transforms the graph, and an
        # NNCF model read back from disk scored mAP 0.5743 where the in-memory one scored 0.5738 (synth-detr).
        self.ov_model = core.read_model(str(artifact))
        self._core, self._compile_config = core, self._config(ov, precision, context.threads)
        self._check_precision_applied(precision, method)
        self.precision = precision
        notes.append(f"inference precision {precision}; compute layers by runtime precision: "
                     f"{executed_precisions(self.compiled)}")
        if precision == "f32" and "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            notes.append("OpenVINO's default inference precision on this BF16-capable CPU is bf16; this variant "
                         "pins f32 (a variant with quantize method bf16 measures what a user gets by default)")
        notes.append(self._check_parity(model, context, strict=method is None and precision == "f32"))
        return BuildInfo(build_seconds=time.perf_counter() - start, artifact=artifact, notes=notes)

    def artifact_in(self, workdir: Path, quantize: QuantizeStep | None) -> Path:
        return Path(workdir) / "model.xml"

    def load(self, artifact: Path, quantize: QuantizeStep | None, threads: int | None = None) -> None:
        ov = _import_openvino()
        core = ov.Core()
        precision = self._inference_precision(core, quantize)
        if not (Path(artifact).is_file() and Path(artifact).with_suffix(".bin").is_file()):
            raise OptimError("the variant's OpenVINO IR (model.xml + model.bin) is missing", path=artifact,
                             fix="run the experiment again (python -m optim.run SPEC) to rebuild it")
        try:
            self.ov_model = core.read_model(str(artifact))
        except RuntimeError as error:
            raise OptimError(f"OpenVINO cannot read the IR ({error})", path=artifact,
                             fix="delete the variant's artifacts folder and run the experiment again") from error
        self._core, self._compile_config, self.precision = core, self._config(ov, precision, threads), precision
        self._check_precision_applied(precision, quantize.method if quantize else None)

    def _convert(self, ov, model, context: BuildContext):
        """The float model as an `openvino.Model` with a dynamic batch axis: straight from PyTorch (OpenVINO's
        documented path; its frontend keeps attention as one op that the CPU plugin fuses) or through the
        lab's ONNX export (`engine.openvino_source: onnx`)."""
        if self.spec.openvino_source == "onnx":
            onnx_path = export_onnx(model, context.workdir / "model.onnx", context.input_size, self.spec.opset)
            return ov.convert_model(str(onnx_path))
        key = (model_identity(model), tuple(context.input_size))
        if key not in _CONVERTED:  # variants of one run share the float model: convert it once
            import torch

            example = torch.zeros(1, 3, *context.input_size)
            with torch.no_grad():
                ov_model = ov.convert_model(RawOutputs(model.eval()), example_input=example,
                                            input=[ov.PartialShape([-1, 3, *context.input_size])])
            for output, name in zip(ov_model.outputs, OUTPUT_NAMES):
                output.get_tensor().set_names({name})
            _CONVERTED.clear()  # keep one model: a run converts one float model (per prune/distill prefix)
            _CONVERTED[key] = ov_model
        return _CONVERTED[key].clone()  # NNCF and reshape work on a copy

    def _check_parity(self, model, context: BuildContext, strict: bool) -> str:
        """Max |OpenVINO - PyTorch| on a calibration image; beyond PARITY_ATOL raises OptimError when `strict`
        (FP32), else it is only reported (INT8/BF16 are judged by mAP and fidelity)."""
        batches = [np.asarray(b) for b in context.calibration]
        sample = batches[0][:1] if batches else np.zeros((1, 3, *context.input_size), np.float32)
        diffs = max_abs_diff(torch_outputs(model, sample), self.infer(sample))
        text = ", ".join(f"{name} {diff:.1e}" for name, diff in diffs.items())
        if strict and not all(diff <= PARITY_ATOL[name] for name, diff in diffs.items()):
            raise OptimError(f"OpenVINO's FP32 outputs do not match PyTorch: max |diff| {text} (tolerances "
                             f"{PARITY_ATOL})", field="engine", fix="try engine.openvino_source: onnx (or pytorch), "
                             "and report the model")
        return f"parity vs PyTorch on {'a calibration image' if batches else 'zeros'}: max |diff| {text}"

    @staticmethod
    def _inference_precision(core, quantize: QuantizeStep | None) -> str:
        """f32 unless the step asks for a float cast this CPU can run; an unsupported one is an error,
        never a silent fallback."""
        if quantize is None or quantize.method not in FLOAT_CASTS:
            return "f32"
        precision, capability = FLOAT_CASTS[quantize.method]
        if quantize.keep_float:
            raise OptimError(f"keep_float is not supported with OpenVINO {quantize.method}: the CPU plugin applies "
                             "the inference precision to the whole graph", field="keep_float",
                             fix="remove keep_float, or use method: nncf (INT8), which honours keep_float")
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if capability not in capabilities:
            raise OptimError(f"this CPU has no {capability} support (OpenVINO reports {capabilities}), so "
                             f"OpenVINO would silently run {quantize.method} in another precision",
                             field="method", fix="drop this variant or use method: nncf (INT8) on this machine")
        return precision

    def _config(self, ov, precision: str, threads: int | None) -> dict:
        import openvino.properties as props
        import openvino.properties.hint as hints

        config = {
            # Always explicit: on BF16-capable CPUs OpenVINO otherwise runs an "FP32" model in bf16,
            # and the non-quantized layers of an INT8 model too.
            hints.inference_precision: getattr(ov.Type, precision),
            hints.performance_mode: hints.PerformanceMode.LATENCY,
            props.enable_profiling: self.enable_perf_counters,
        }
        if threads:
            config[props.inference_num_threads] = threads
        return config

    def _check_precision_applied(self, precision: str, method: str | None) -> None:
        """The plugin may substitute a precision (f16 becomes bf16 on CPUs without FP16); refuse that."""
        applied = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if applied != precision:
            raise OptimError(f"OpenVINO compiled with inference precision {applied} instead of the requested "
                             f"{precision}", field="method",
                             fix=f"this CPU cannot run {method or 'fp32'} in OpenVINO: drop this variant")

    @property
    def compiled(self):
        """The model compiled for one image (compiled on first use; `infer` runs it at batch 1)."""
        shape = self.ov_model.inputs[0].get_partial_shape()
        return self.request_for((1, *(dim.get_length() for dim in list(shape)[1:]))).get_compiled_model()

    def infer(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """DETR's raw outputs for one batch: the input is written into the request's own input buffer, the
        request runs without building Python result objects (`start_async` + `wait`, the C++ call
        benchmark_app times) and the outputs are copied out (the request reuses their buffers next call)."""
        request, pixels, outputs = self._io_for(tuple(pixel_values.shape))
        np.copyto(pixels, pixel_values, casting="same_kind")
        request.start_async()
        request.wait()
        return tuple(output.copy() for output in outputs)

    def request_for(self, shape: tuple[int, ...]):
        """An infer request of the model compiled for exactly this input shape (compiled on first use).

        The IR keeps a dynamic batch axis, but the CPU plugin runs a static shape faster (no shape inference
        or buffer reallocation per call; measured ~1.4x on synth-detr at batch 1), and a deployment serves
        fixed shapes: this is what benchmark_app times, too."""
        return self._io_for(tuple(shape))[0]

    def _io_for(self, shape: tuple[int, ...]) -> tuple[object, np.ndarray, tuple[np.ndarray, ...]]:
        """(request, its input buffer, its output buffers) for `shape`. With a static shape the CPU plugin keeps
        a request's tensors for the request's lifetime, so the numpy views stay valid (tests check it)."""
        if shape not in self._requests:
            model = self.ov_model.clone()
            model.reshape({"pixel_values": list(shape)})
            request = self._core.compile_model(model, "CPU", self._compile_config).create_infer_request()
            self._requests[shape] = (request, request.get_input_tensor(0).data,
                                     tuple(request.get_tensor(name).data for name in OUTPUT_NAMES))
        return self._requests[shape]

    def close(self) -> None:
        self.ov_model = None
        self._requests = {}

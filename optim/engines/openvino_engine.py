"""OpenVINO on CPU: ONNX -> OpenVINO model, optionally NNCF INT8 or a BF16/FP16 inference precision,
saved as IR (model.xml + model.bin) and compiled for latency."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection
from pathlib import Path

import numpy as np

from optim.engines.base import BuildContext, BuildInfo, Engine
from optim.engines.onnx_export import OUTPUT_NAMES, export_onnx
from optim.errors import MissingExtraError, OptimError
from optim.spec import QuantizeStep

# The layers that do the arithmetic; their runtime precision tells whether a quantization really ran.
COMPUTE_LAYER_TYPES = ("Convolution", "FullyConnected", "MatMul")
# quantize.method -> (OpenVINO inference precision, the CPU capability it needs)
FLOAT_CASTS = {"fp16": ("f16", "FP16"), "bf16": ("bf16", "BF16")}


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
    """OpenVINO CPU plugin. Public after build: `ov_model` (what was compiled), `compiled`, `request`.

    Set `enable_perf_counters = True` before `build` to compile with PERF_COUNT, so that
    `request.get_profiling_info()` gives per-layer times (it slows inference slightly: never time with it)."""

    kind = "openvino"

    def __init__(self, spec):
        super().__init__(spec)
        self.enable_perf_counters = False
        self.ov_model = None
        self.compiled = None
        self.request = None

    def build(self, model, quantize: QuantizeStep | None, context: BuildContext) -> BuildInfo:
        start = time.perf_counter()
        ov = _import_openvino()
        core = ov.Core()
        method = quantize.method if quantize else None
        precision = self._inference_precision(core, quantize)  # checked first: fail before the slow steps
        onnx_path = export_onnx(model, context.workdir / "model.onnx", context.input_size, self.spec.opset)
        ov_model = ov.convert_model(str(onnx_path))
        notes = []
        if method == "nncf":
            from optim.quantize.nncf_quant import fake_quantize_consumers, quantize_nncf

            ov_model = quantize_nncf(ov_model, quantize, context.calibration)
            kept = ", ".join(quantize.keep_float) or "none"
            notes.append(f"NNCF INT8 (MIXED preset, transformer mode): {len(fake_quantize_consumers(ov_model))} "
                         f"FakeQuantize ops; blocks kept in float: {kept}")
        artifact = context.workdir / "model.xml"
        # compress_to_fp16=False: the IR keeps FP32 weights, so the file size is the honest FP32/INT8 size.
        ov.save_model(ov_model, str(artifact), compress_to_fp16=False)
        self.ov_model = ov_model
        self.compiled = core.compile_model(ov_model, "CPU", self._config(ov, precision, context.threads))
        self._check_precision_applied(precision, method)
        self.request = self.compiled.create_infer_request()
        notes.append(f"inference precision {precision}; compute layers by runtime precision: "
                     f"{executed_precisions(self.compiled)}")
        return BuildInfo(build_seconds=time.perf_counter() - start, artifact=artifact, notes=notes)

    def load_artifact(self, artifact: Path, quantize: QuantizeStep | None, threads: int | None = None) -> None:
        """Compile the IR (model.xml + .bin) an earlier `build` wrote, with the same precision and hints."""
        ov = _import_openvino()
        core = ov.Core()
        precision = self._inference_precision(core, quantize)
        self.ov_model = core.read_model(str(artifact))
        self.compiled = core.compile_model(self.ov_model, "CPU", self._config(ov, precision, threads))
        self._check_precision_applied(precision, quantize.method if quantize else None)
        self.request = self.compiled.create_infer_request()

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

    def infer(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.request.infer({"pixel_values": np.ascontiguousarray(pixel_values, dtype=np.float32)})
        # Copies: the request reuses its output buffers on the next call.
        return tuple(np.array(self.request.get_tensor(name).data, dtype=np.float32) for name in OUTPUT_NAMES)

    def close(self) -> None:
        self.request = None
        self.compiled = None
        self.ov_model = None

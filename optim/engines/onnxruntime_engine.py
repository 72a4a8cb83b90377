"""ONNX Runtime engine: export to ONNX, check FP32 parity with PyTorch, optionally quantize (static QDQ,
dynamic, FP16), then run an InferenceSession on the chosen execution providers."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from optim.engines.base import BuildContext, BuildInfo, Engine
from optim.engines.onnx_export import (
    OUTPUT_NAMES,
    PARITY_ATOL,
    export_onnx,
    load_onnx_checked,
    max_abs_diff,
    torch_outputs,
)
from optim.errors import MissingExtraError, OptimError
from optim.quantize.calibration import INPUT_NAME, calibration_batches, require_batches
from optim.spec import QuantizeStep

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}
GPU_PROVIDERS = {"cuda", "tensorrt"}
PROVIDER_FIX = {
    "cuda": "pip uninstall onnxruntime && pip install onnxruntime-gpu, on a machine with an NVIDIA GPU and "
            "CUDA/cuDNN; or use providers: [cpu]",
    "tensorrt": "pip uninstall onnxruntime && pip install onnxruntime-gpu, with the TensorRT libraries on "
                "LD_LIBRARY_PATH, on a machine with an NVIDIA GPU; or use providers: [cuda] / [cpu]",
    "cpu": "reinstall onnxruntime (pip install --force-reinstall onnxruntime)",
}
# How the quantized model is named in the work folder, per quantize method.
ARTIFACT_NAMES = {"ort_static": "model.int8.onnx", "ort_dynamic": "model.int8-dynamic.onnx",
                  "fp16": "model.fp16.onnx"}
PARITY_IMAGES = 2  # images of the first calibration batch used for the FP32 parity check


def ort_module():
    """The onnxruntime module, or MissingExtraError."""
    try:
        import onnxruntime
    except ImportError as error:
        raise MissingExtraError("onnxruntime", "onnxruntime", "The ONNX Runtime engine") from error
    return onnxruntime


def resolve_providers(names: list[str], device: str = "cpu") -> list[str]:
    """ONNX Runtime provider names for `engine.providers`; one that this install lacks raises OptimError.

    With `device: cuda` and no GPU provider listed (the default `[cpu]`), CUDA is put first: the device
    says where the variant runs, and ONNX Runtime falls back to the CPU for nodes CUDA cannot run."""
    if device == "cuda" and not GPU_PROVIDERS & set(names):
        names = ["cuda", *names]
    available = ort_module().get_available_providers()
    for name in names:
        if PROVIDERS[name] not in available:
            raise OptimError(f"ONNX Runtime execution provider '{name}' ({PROVIDERS[name]}) is not available "
                             f"in this installation (available: {', '.join(available)})",
                             field="engine.providers", fix=PROVIDER_FIX[name])
    return [PROVIDERS[name] for name in names]


def session_options(threads: int | None = None):
    """SessionOptions used for every measured session: all graph optimizations, `threads` intra-op threads."""
    ort = ort_module()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return options


def create_session(onnx_path: Path, providers: list[str], threads: int | None = None, options=None):
    """An InferenceSession on a checked ONNX file; a corrupt file or a failing provider raises OptimError."""
    ort = ort_module()
    load_onnx_checked(onnx_path)
    try:
        return ort.InferenceSession(str(onnx_path), options or session_options(threads), providers=providers)
    except Exception as error:  # onnxruntime raises its own Fail / InvalidGraph / NotImplemented types
        raise OptimError(f"ONNX Runtime cannot create a session ({type(error).__name__}: {error})", path=onnx_path,
                         fix="delete the file so that it is exported again, or try providers: [cpu]") from error


def run_session(session, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, 3, H, W) -> (logits, pred_boxes) as float32 numpy arrays."""
    feed = {INPUT_NAME: np.ascontiguousarray(pixel_values, dtype=np.float32)}
    logits, boxes = session.run(OUTPUT_NAMES, feed)
    return logits.astype(np.float32, copy=False), boxes.astype(np.float32, copy=False)


def check_parity(reference: tuple[np.ndarray, np.ndarray], onnx_path: Path, sample: np.ndarray,
                 threads: int | None = None) -> dict[str, float]:
    """Max |ONNX Runtime (CPU) - PyTorch| per output on `sample`, against PyTorch's `reference` outputs for it;
    beyond PARITY_ATOL raises OptimError."""
    session = create_session(onnx_path, ["CPUExecutionProvider"], threads)
    diffs = max_abs_diff(reference, run_session(session, sample))
    failed = {name: diff for name, diff in diffs.items() if not diff <= PARITY_ATOL[name]}  # NaN fails too
    if failed:
        detail = ", ".join(f"{name}={diff:.2e} (tolerance {PARITY_ATOL[name]:.0e})" for name, diff in failed.items())
        raise OptimError(f"the exported ONNX model does not match PyTorch: max |diff| {detail}", path=onnx_path,
                         fix="try another engine.opset, or report the model: the export is wrong")
    return diffs


class OnnxRuntimeEngine(Engine):
    """ONNX Runtime on CPU, CUDA or TensorRT execution providers. After `build`, `session` is the
    InferenceSession and `model_path` the ONNX file it runs (for profiling)."""

    kind = "onnxruntime"
    session = None
    model_path: Path | None = None

    def build(self, model, quantize: QuantizeStep | None, context: BuildContext) -> BuildInfo:
        start = time.perf_counter()
        providers = resolve_providers(list(self.spec.providers), self.spec.device)  # fail before exporting
        target_gpu = providers[0] != PROVIDERS["cpu"]
        method = quantize.method if quantize else None
        if method == "fp16" and not target_gpu:
            raise OptimError("fp16 with ONNX Runtime needs a GPU provider (the CPU provider lacks most FP16 "
                             "kernels)", field="engine.providers", fix="use providers: [cuda], or int8 on CPU")
        workdir = Path(context.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        batches = calibration_batches(context.calibration, context.input_size)
        if method == "ort_static":
            require_batches(batches, method)

        sample = batches[0][:PARITY_IMAGES] if batches else np.zeros((1, 3, *context.input_size), np.float32)
        # The reference comes from the model as given, before the exporter traces it: measured on DETR-R50 at
        # 800x1066 after the FLOP count, eager outputs read after tracing differed from the same model's before
        # (logits by 0.39) while the exported file matched the untouched model to 7e-7.
        reference = torch_outputs(model, sample)
        fp32_path = export_onnx(model, workdir / "model.onnx", context.input_size, self.spec.opset)
        diffs = check_parity(reference, fp32_path, sample, context.threads)
        notes = [f"providers: {', '.join(providers)}",
                 f"FP32 parity vs PyTorch on {'a calibration batch' if batches else 'zeros'}: max |diff| "
                 + ", ".join(f"{name} {diff:.1e}" for name, diff in diffs.items())]

        path = fp32_path
        if method is not None:
            path = workdir / ARTIFACT_NAMES[method]
            notes += self._quantize(fp32_path, path, quantize, batches, target_gpu)
            notes.append("quantized ops: " + summary_text(path))
        self.model_path = path
        self.session = create_session(path, providers, context.threads)
        return BuildInfo(build_seconds=time.perf_counter() - start, artifact=path, notes=notes)

    @staticmethod
    def _quantize(source: Path, output: Path, step: QuantizeStep, batches: list[np.ndarray],
                  target_gpu: bool) -> list[str]:
        """Apply the quantize step to the FP32 ONNX file; returns notes."""
        from optim.quantize import ort_quant

        if step.method == "ort_static":
            return ort_quant.quantize_static_int8(source, output, step, batches, target_gpu)
        if step.method == "ort_dynamic":
            return ort_quant.quantize_dynamic_int8(source, output, step)
        if step.method == "fp16":
            return ort_quant.convert_fp16(source, output, step)
        raise OptimError(f"quantize method '{step.method}' cannot run on engine 'onnxruntime'",
                         field="steps.quantize.method", fix="use ort_static, ort_dynamic or fp16")

    def artifact_in(self, workdir: Path, quantize: QuantizeStep | None) -> Path:
        return Path(workdir) / (ARTIFACT_NAMES[quantize.method] if quantize else "model.onnx")

    def load(self, artifact: Path, quantize: QuantizeStep | None, threads: int | None = None) -> None:
        if not Path(artifact).is_file():
            raise OptimError("the variant's ONNX file is missing", path=artifact,
                             fix="run the experiment again (python -m optim.run SPEC) to rebuild it")
        self.model_path = Path(artifact)
        self.session = create_session(self.model_path, resolve_providers(list(self.spec.providers), self.spec.device),
                                      threads)

    def infer(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.session is None:
            raise RuntimeError("OnnxRuntimeEngine.infer called before build() or after close()")
        return run_session(self.session, pixel_values)

    def close(self) -> None:
        self.session = None


def summary_text(onnx_path: Path) -> str:
    """quantized_op_summary as one line ('none' for a float graph, e.g. FP16)."""
    from optim.quantize.ort_quant import quantized_op_summary

    summary = quantized_op_summary(onnx_path)
    return ", ".join(f"{name} {count}" for name, count in summary.items()) or "none"

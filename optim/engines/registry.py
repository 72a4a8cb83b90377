"""Which engines exist, the extra each needs, and lazy construction (a missing one names its extra)."""

from __future__ import annotations

import importlib
import importlib.util

from optim.engines.base import Engine
from optim.errors import MissingExtraError, OptimError
from optim.spec import EngineSpec

# kind -> (module, class, python package it needs, extra that installs it)
ENGINES: dict[str, tuple[str, str, str, str]] = {
    "pytorch": ("optim.engines.pytorch_engine", "PyTorchEngine", "torch", "cpu"),
    "torch_compile": ("optim.engines.pytorch_engine", "TorchCompileEngine", "torch", "cpu"),
    "onnxruntime": ("optim.engines.onnxruntime_engine", "OnnxRuntimeEngine", "onnxruntime", "onnxruntime"),
    "openvino": ("optim.engines.openvino_engine", "OpenVinoEngine", "openvino", "openvino"),
    "tensorrt": ("optim.engines.tensorrt_engine", "TensorRtEngine", "tensorrt", "gpu"),
    "torch_tensorrt": ("optim.engines.tensorrt_engine", "TorchTensorRtEngine", "torch_tensorrt", "gpu"),
}
# Quantize methods that need a package beyond their engine's.
METHOD_PACKAGES = {"nncf": ("nncf", "openvino"), "inc": ("neural_compressor", "inc"),
                   "modelopt_int8": ("modelopt", "gpu"), "modelopt_fp8": ("modelopt", "gpu")}


def check_available(spec: EngineSpec, method: str | None = None) -> None:
    """Raise a clear error when the engine, its quantizer or the device it needs is missing."""
    module, _, package, extra = ENGINES[spec.kind]
    if importlib.util.find_spec(package) is None:
        raise MissingExtraError(package, extra, f"engine '{spec.kind}'")
    if importlib.util.find_spec(module) is None:
        raise OptimError(f"engine '{spec.kind}' is not available in this build", field="engine.kind")
    if method in METHOD_PACKAGES:
        package, extra = METHOD_PACKAGES[method]
        if importlib.util.find_spec(package) is None:
            raise MissingExtraError(package, extra, f"quantize method '{method}'")
    if spec.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise OptimError(f"engine '{spec.kind}' asks for device: cuda, but no CUDA GPU is visible",
                             field="engine.device", fix="run on a machine with an NVIDIA GPU, or use device: cpu")


def create_engine(spec: EngineSpec) -> Engine:
    """Instantiate the engine class for `spec.kind`, importing its module only now."""
    module, cls, _, _ = ENGINES[spec.kind]
    return getattr(importlib.import_module(module), cls)(spec)

"""What machine and which library versions produced a result."""

from __future__ import annotations

import importlib.metadata
import os
import platform


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpuinfo(field: str) -> str | None:
    """The first value of `field` in /proc/cpuinfo (Linux), or None."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU model name, else platform's guess."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """Instruction-set flags of the CPU (Linux), e.g. avx2, avx512f, amx_bf16."""
    return set((_cpuinfo("flags") or "").split())


def this_machine(device: str = "cpu") -> dict:
    """Which machine measures here: hostname and CPU model, plus the GPU's name for a CUDA variant."""
    import socket

    machine = {"hostname": socket.gethostname(), "cpu": cpu_name()}
    if device == "cuda":
        import torch

        machine["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return machine


def environment() -> dict:
    """Versions, CPU, cores and GPU (if any) for the report."""
    import torch

    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": props.name, "memory_gb": round(props.total_memory / 2**30, 1),
               "cuda": torch.version.cuda, "driver": _nvidia_smi("driver_version"),
               "clocks": _nvidia_smi("clocks.sm,clocks.mem,clocks.max.sm")}  # current SM, memory; max SM
    flags = cpu_flags()
    return {
        "python": platform.python_version(), "os": platform.platform(), "machine": platform.machine(),
        "cpu": cpu_name(), "cores": os.cpu_count(),
        "cpu_features": sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_bf16", "avx512_bf16"}),
        "torch_threads": torch.get_num_threads(), "gpu": gpu,
        **{name: _version(name) for name in ("torch", "transformers", "onnx", "onnxruntime", "openvino", "nncf",
                                              "neural-compressor", "torch-pruning", "pycocotools", "tensorrt",
                                              "torch-tensorrt", "nvidia-modelopt", "detr-optim-lab")},
    }


def _nvidia_smi(query: str) -> str | None:
    """GPU 0's answer to `nvidia-smi --query-gpu=QUERY` (e.g. "1980 MHz, 2619 MHz"); None without nvidia-smi."""
    try:
        import subprocess

        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=False)
        lines = out.stdout.strip().splitlines()
        return lines[0].strip() if out.returncode == 0 and lines else None
    except (OSError, subprocess.SubprocessError):
        return None

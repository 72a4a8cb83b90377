"""Each engine's own benchmark tool, run on the very artifact and settings the lab timed.

- OpenVINO: `benchmark_app` (ships with the openvino wheel), latency hint, the lab's static input shape,
  inference precision and threads; its median latency.
- ONNX Runtime: `python -m onnxruntime.tools.onnxruntime_test` (ships with the onnxruntime wheel; the C++
  `onnxruntime_perf_test` is not in the wheel), which runs the model with ONNX Runtime's default session
  options and prints the mean latency of N runs.
- PyTorch (eager, torch.compile): `torch.utils.benchmark.Timer.blocked_autorange` on the same engine in
  this process; its median.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from optim.spec import LatencySpec

AGREEMENT_TOLERANCE = 0.15  # lab / reference outside [1/1.15, 1.15] is flagged in the report


@dataclass
class ReferenceFigure:
    """One reference-tool reading beside the lab's figure for the same statistic."""

    tool: str
    command: str
    statistic: str  # "median" or "mean"
    reference_ms: float
    lab_ms: float

    @property
    def ratio(self) -> float:
        return self.lab_ms / self.reference_ms

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": round(self.ratio, 3), "agrees": agrees(self.ratio)}


def agrees(ratio: float) -> bool:
    """Whether lab / reference is within the agreement tolerance."""
    return 1.0 / (1.0 + AGREEMENT_TOLERANCE) <= ratio <= 1.0 + AGREEMENT_TOLERANCE


def _run(tool: str, command: list[str], timeout: float) -> str:
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-6:])
        raise RuntimeError(f"{tool} failed (exit {done.returncode}): {tail}")
    return done.stdout


def benchmark_app_median_ms(artifact: Path, precision: str, threads: int | None, shape: tuple[int, ...],
                            seconds: float) -> tuple[float, str]:
    """OpenVINO benchmark_app's median latency (ms) for the IR at `shape`, with the lab's settings (it times
    whole seconds: at least 1)."""
    tool = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
    command = [tool, "-m", str(artifact), "-d", "CPU", "-api", "sync",
               "-shape", f"pixel_values[{','.join(map(str, shape))}]", "-t", str(max(1, round(seconds))),
               "-infer_precision", precision]
    # The lab compiles with the latency hint (one stream); benchmark_app takes a thread count only without a
    # hint, so then it gets the latency hint's one stream explicitly.
    command += ["-hint", "none", "-nstreams", "1", "-nthreads", str(threads)] if threads else ["-hint", "latency"]
    output = _run("benchmark_app", command, timeout=120 + 4 * seconds)
    match = re.search(r"Median:\s+([0-9.]+)\s*(ms|us)", output)  # it prints us below 1 ms
    if not match:
        raise RuntimeError("benchmark_app printed no median latency")
    scale = 1.0 if match.group(2) == "ms" else 1e-3
    return float(match.group(1)) * scale, " ".join(["benchmark_app", *command[1:]])


def onnxruntime_test_mean_ms(artifact: Path, batch_size: int, iterations: int) -> tuple[float, str]:
    """ONNX Runtime's onnxruntime_test mean latency (ms) over `iterations` runs at `batch_size`."""
    command = [sys.executable, "-m", "onnxruntime.tools.onnxruntime_test", str(artifact), str(iterations),
               "--symbolic_dims", f"batch={batch_size}"]
    output = _run("onnxruntime_test", command, timeout=120 + iterations)
    match = re.search(r"avg latency:\s+([0-9.]+)\s*ms", output)
    if not match:
        raise RuntimeError("onnxruntime_test printed no average latency")
    return float(match.group(1)), " ".join(["python -m onnxruntime.tools.onnxruntime_test", *command[3:]])


def torch_benchmark_median_ms(infer: Callable[[], object], seconds: float) -> tuple[float, str]:
    """torch.utils.benchmark's median (ms) of `infer` over blocks of runs lasting `seconds` in all."""
    from torch.utils import benchmark

    timer = benchmark.Timer(stmt="infer()", globals={"infer": infer}, num_threads=_torch_threads())
    return timer.blocked_autorange(min_run_time=seconds).median * 1000.0, \
        f"torch.utils.benchmark.Timer(...).blocked_autorange(min_run_time={seconds:g})"


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def reference_figure(engine, artifact: Path | None, batch: tuple[int, ...], lab_stats: dict, latency: LatencySpec,
                     infer: Callable[[], object]) -> ReferenceFigure | None:
    """The engine's own tool on what the lab timed (`engine` as built, `artifact` the file it runs), beside the
    lab's matching statistic; None when the engine has no reference tool here (TensorRT's trtexec is used on
    GPU machines only)."""
    kind, seconds = engine.spec.kind, latency.reference_seconds
    if kind == "openvino" and artifact is not None:
        ms, command = benchmark_app_median_ms(artifact, engine.precision, latency.threads, batch, seconds)
        return ReferenceFigure("benchmark_app", command, "median", ms, lab_stats["p50_ms"])
    if kind == "onnxruntime" and artifact is not None:
        iterations = max(20, int(seconds * 1000.0 / max(lab_stats["mean_ms"], 1e-3)))
        ms, command = onnxruntime_test_mean_ms(artifact, batch[0], iterations)
        return ReferenceFigure("onnxruntime_test", command, "mean", ms, lab_stats["mean_ms"])
    if kind in ("pytorch", "torch_compile"):
        ms, command = torch_benchmark_median_ms(infer, seconds)
        return ReferenceFigure("torch.utils.benchmark", command, "median", ms, lab_stats["p50_ms"])
    return None

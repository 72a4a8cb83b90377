"""python -m profiling.nvtx_capture [--model synth-detr] [--device cuda] — end-to-end iterations inside the
NVTX stage ranges (preprocess, inference > backbone / encoder / decoder / heads, postprocess), to run under
an Nsight tool without a whole experiment:

    nsys profile -t nvtx,cuda -o detr python -m profiling.nvtx_capture
    ncu --nvtx --nvtx-include "inference/backbone/" --metrics gpu__time_duration.sum \\
        python -m profiling.nvtx_capture --iterations 1 --warmup 0

It also prints each stage's median time from the ranges' own timers (on CUDA they wait for the GPU at their
edges), so the same command shows the breakdown without a profiler.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from optim.cli import run_cli
from optim.engines.base import BuildContext
from optim.engines.pytorch_engine import PyTorchEngine
from optim.errors import OptimError
from optim.models.zoo import load_model
from optim.spec import EngineSpec
from profiling.nvtx_ranges import instrument_detr, ranges_enabled
from profiling.stages import Sample, ranged_iterations, run_end_to_end


def noise_sample(input_size: tuple[int, int], seed: int = 0) -> Sample:
    """A random RGB image of the model's input size (the stage times do not depend on its content)."""
    height, width = input_size
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Sample(Image.fromarray(pixels), np.array([[height, width]]), (height, width))


def capture(model_name: str, device_name: str, iterations: int, warmup: int) -> dict[str, float]:
    """Run `warmup` + `iterations` end-to-end iterations of the model on the PyTorch engine inside NVTX
    ranges; median ms per stage range."""
    if torch.device(device_name).type == "cuda" and not torch.cuda.is_available():
        raise OptimError("--device cuda needs a CUDA GPU and a CUDA build of torch", field="--device",
                         fix="run on a GPU machine, or pass --device cpu")
    loaded = load_model(model_name, allow_download=False)
    input_size = tuple(loaded.default_input_size)
    engine = PyTorchEngine(EngineSpec(kind="pytorch", device=device_name))
    with tempfile.TemporaryDirectory(prefix="nvtx-capture-") as workdir:
        engine.build(loaded.model, None, BuildContext(workdir=Path(workdir), input_size=input_size))
    sample = noise_sample(input_size)
    hooks = instrument_detr(engine.model)
    try:
        with ranges_enabled(nvtx=True):
            run_end_to_end(engine.infer, sample, iterations=0, warmup=warmup)
        _, stages_ms = ranged_iterations(engine.infer, sample, iterations, nvtx=True,
                                         cuda=engine.device.type == "cuda")
    finally:
        hooks.remove()
    return stages_ms


def main(argv: list[str] | None = None, prog: str = "python -m profiling.nvtx_capture") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="synth-detr", help="zoo name, *-arch entry or model folder")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iterations", type=int, default=20, help="iterations inside the ranges, timed")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first (also inside ranges)")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.warmup < 0:
        parser.error("--iterations must be >= 1 and --warmup >= 0")
    stages = capture(args.model, args.device, args.iterations, args.warmup)
    print(f"{args.model} on {args.device}: {args.iterations} iterations inside NVTX stage ranges; median ms per range")
    for name, ms in stages.items():
        print(f"  {name:<12} {ms:8.3f}")
    return 0


if __name__ == "__main__":
    run_cli(main)

"""python -m profiling.overhead [--model synth-detr] — what the stage instrumentation costs, measured.

Times DETR's forward pass under four conditions, interleaved round by round so that machine drift hits
them alike: `plain` (no hooks), `hooks, profiling off` (the stage hooks installed, ranges disabled: what
instrumented code costs while it is being timed), `plain again` (an A/A repeat that measures the noise) and
`stage timers on` (ranges enabled with their perf_counter timers, as the stage breakdown runs). Profiling
off counts as free when its median cost relative to `plain` is within the A/A noise: the median absolute
plain-vs-plain difference over the rounds.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from optim.cli import run_cli
from optim.environment import cpu_name
from optim.models.zoo import load_model
from profiling.nvtx_ranges import instrument_detr, ranges_enabled

CONDITIONS = ("plain", "hooks, profiling off", "plain again", "stage timers on")


def _median_ms(forward: Callable[[], object], iterations: int) -> float:
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        forward()
        samples.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(samples))


def measure_overhead(model: torch.nn.Module, pixels: torch.Tensor, rounds: int, iterations: int) -> dict:
    """Median forward ms per condition and round, and the verdict (see the module docstring)."""
    on_cuda = pixels.is_cuda

    def forward() -> object:
        with torch.inference_mode():
            outputs = model(pixel_values=pixels)
        if on_cuda:
            torch.cuda.synchronize()  # time the kernels, not their launch
        return outputs

    for _ in range(5):  # warm-up
        forward()
    per_round: dict[str, list[float]] = {name: [] for name in CONDITIONS}
    for _ in range(rounds):
        per_round["plain"].append(_median_ms(forward, iterations))
        hooks = instrument_detr(model)
        try:
            per_round["hooks, profiling off"].append(_median_ms(forward, iterations))
            seconds: dict[str, float] = {}
            with ranges_enabled(seconds=seconds, labels=False, cuda=on_cuda):
                timed_on = _median_ms(forward, iterations)
        finally:
            hooks.remove()
        per_round["plain again"].append(_median_ms(forward, iterations))
        per_round["stage timers on"].append(timed_on)
    plain = np.asarray(per_round["plain"])
    relative = {name: (np.asarray(values) - plain) / plain for name, values in per_round.items()}
    noise = float(np.median(np.abs(relative["plain again"])))
    off = float(np.median(relative["hooks, profiling off"]))
    return {
        "median_ms": {name: round(float(np.median(values)), 4) for name, values in per_round.items()},
        "median_change_vs_plain": {name: round(float(np.median(values)), 4) for name, values in relative.items()},
        "noise": round(noise, 4),
        "profiling_off_within_noise": abs(off) <= noise,
        "rounds": rounds, "iterations": iterations, "threads": torch.get_num_threads(), "cpu": cpu_name(),
        "device": torch.cuda.get_device_name(pixels.device) if on_cuda else "cpu",
    }


def format_overhead(result: dict) -> str:
    """The table and verdict as text."""
    lines = [f"{'condition':<22} {'median ms':>10} {'vs plain':>9}"]
    for name in CONDITIONS:
        lines.append(f"{name:<22} {result['median_ms'][name]:>10.3f} {result['median_change_vs_plain'][name]:>+9.1%}")
    verdict = "within" if result["profiling_off_within_noise"] else "OUTSIDE"
    lines.append(f"noise (median |plain again - plain| over {result['rounds']} rounds): ±{result['noise']:.1%}; "
                 f"profiling off is {verdict} the noise")
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "python -m profiling.overhead") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="synth-detr", help="zoo name, *-arch entry or model folder")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=20, help="timed forwards per condition and round")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (a CUDA build of torch and a GPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.iterations < 1:
        parser.error("--rounds and --iterations must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.model, allow_download=False)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU and a CUDA build of torch")
    pixels = torch.randn(1, 3, *loaded.default_input_size, device=args.device)
    model = loaded.model.to(args.device)
    result = {"model": args.model, **measure_overhead(model, pixels, args.rounds, args.iterations)}
    print(format_overhead(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)

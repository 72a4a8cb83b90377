"""The machine's matrix-product peak, measured once per run, and how close each variant gets to it.

A fixed large product per precision on the experiment's threads: FP32 and BF16 with `torch.mm`, INT8 with
PyTorch's quantized linear on each quantized engine this build has (oneDNN, x86, fbgemm: VNNI/AMX kernels
where the CPU has them; `torch._int_mm` has no fast CPU kernel and reads below FP32), the fastest engine
counting. The best of a few repetitions is the peak; a variant's achieved rate is its FLOPs per image x
batch / p50 latency.
"""

from __future__ import annotations

import time

PEAK_TEXT = ("Share of peak: the machine's matrix-product peak is measured once per run (1024x1024 products on the "
             "experiment's threads: FP32 and BF16 with torch.mm, INT8 with PyTorch's quantized linear on its fastest "
             "quantized engine); a variant's achieved rate is its FLOPs per image (torch.utils.flop_counter) x batch / "
             "p50 at the first batch size, as a share of the peak of its precision (FP32's for FP16).")
SIZE = 1024  # 2 GFLOP per product: long enough to reach the peak, short enough to repeat
REPEATS = 5


def _best_seconds(call, repeats: int = REPEATS) -> float:
    call()  # warm-up: packs weights, starts the thread pool
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def measure_peaks(threads: int | None = None) -> dict[str, float]:
    """Peak operations per second by precision ({"fp32": 1.5e11, "bf16": ..., "int8": ...}); a precision
    this torch build cannot run on the CPU is left out."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    operations = 2.0 * SIZE**3
    peaks = {}
    try:
        generator = torch.Generator().manual_seed(0)
        a, b = torch.randn(SIZE, SIZE, generator=generator), torch.randn(SIZE, SIZE, generator=generator)
        peaks["fp32"] = operations / _best_seconds(lambda: torch.mm(a, b))
        a16, b16 = a.bfloat16(), b.bfloat16()
        peaks["bf16"] = operations / _best_seconds(lambda: torch.mm(a16, b16))
        int8 = _int8_seconds(a, b)
        if int8:
            peaks["int8"] = operations / int8
    finally:
        torch.set_num_threads(before)
    return {name: round(value, -6) for name, value in peaks.items()}


def _int8_seconds(a, b) -> float | None:
    """Best time of an INT8 (u8 x s8 -> u8) linear layer of `a` by `b` over PyTorch's quantized engines."""
    import warnings

    import torch

    engine_before = torch.backends.quantized.engine
    best = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized tensors are deprecated, their kernels are not gone
            activations = torch.quantize_per_tensor(a, 0.05, 128, torch.quint8)
            weights = torch.quantize_per_tensor(b, 0.05, 0, torch.qint8)
            for engine in ("onednn", "x86", "fbgemm"):
                if engine not in torch.backends.quantized.supported_engines:
                    continue
                torch.backends.quantized.engine = engine
                packed = torch.ops.quantized.linear_prepack(weights, None)
                seconds = _best_seconds(lambda packed=packed: torch.ops.quantized.linear(activations, packed, 0.5, 128))
                best = seconds if best is None else min(best, seconds)
    finally:
        torch.backends.quantized.engine = engine_before
    return best


def share_of_peak(flops_per_image: float, batch_size: int, p50_ms: float, precision: str,
                  peaks: dict[str, float]) -> dict | None:
    """Achieved operations per second and their share of the peak of the variant's precision (FP32 for
    anything without a peak of its own); None without FLOPs or a peak."""
    peak = peaks.get(precision) or peaks.get("fp32")
    if not flops_per_image or not p50_ms or not peak:
        return None
    achieved = flops_per_image * batch_size / (p50_ms / 1000.0)
    return {"achieved_ops": round(achieved, -6), "peak_ops": peak, "share": round(achieved / peak, 4),
            "peak_precision": precision if precision in peaks else "fp32"}

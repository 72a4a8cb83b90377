"""Stage breakdown of the PyTorch engines (eager, torch.compile, dynamic INT8, autocast): the stage ranges
opened by `instrument_detr`'s hooks time themselves (wall clock, no profiler, so the stages add up to the
real latency); torch.profiler then attributes operators to the innermost stage range around them."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch

from optim.models.blocks import block_of_module
from profiling.nvtx_ranges import detr_root, instrument_detr, ranges_enabled
from profiling.stages import (
    BLOCK_STAGES,
    STAGES,
    HostTimes,
    OpTime,
    Sample,
    build_result,
    plain_profiled_plain,
    ranged_iterations,
    run_end_to_end,
)

ATTRIBUTED = set(STAGES) | {"inference"}
TIMED_ITERS = 20  # at least this many timed (and as many plain) iterations: the perf_counter pass is cheap
# Operators that run in the autocast dtype (the rest of an autocast model stays float32).
AUTOCAST_OPS = {"aten::linear", "aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::baddbmm",
                "aten::conv2d", "aten::convolution", "aten::_convolution", "aten::mkldnn_convolution"}


def _op_precision(op: str, autocast_dtype: torch.dtype | None) -> str:
    if op.startswith("quantized::") or "int8" in op:
        return "int8"
    if autocast_dtype is not None and op in AUTOCAST_OPS:
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(autocast_dtype, str(autocast_dtype))
    return "fp32"


def compute_layers(model: torch.nn.Module) -> list[tuple[str, str, bool]]:
    """(module name, stage, runs int8) for every convolution and linear layer of the model that runs."""
    dynamic_linear = torch.ao.nn.quantized.dynamic.Linear
    layers = []
    for name, module in detr_root(model).named_modules():
        if isinstance(module, dynamic_linear):
            layers.append((name, block_of_module(name) or "other", True))
        elif isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            layers.append((name, block_of_module(name) or "other", False))
    return layers


def _stage_of(event) -> str:
    """The innermost stage range enclosing a profiler event ("other" inside inference but outside blocks)."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.is_user_annotation and parent.name in ATTRIBUTED:
            return "other" if parent.name == "inference" else parent.name
        parent = parent.cpu_parent
    return "other"


def _operator_times(events, iterations: int, autocast_dtype) -> list[OpTime]:
    """Mean self time per iteration of each (stage, operator) pair."""
    ops: dict[tuple[str, str], float] = defaultdict(float)
    for event in events:
        if not event.is_user_annotation and event.self_cpu_time_total > 0:
            ops[(_stage_of(event), event.name)] += event.self_cpu_time_total
    per_iter = 1000.0 * max(iterations, 1)  # microseconds summed over iterations -> ms per iteration
    return [OpTime(f"{where}/{op}", op, where, us / per_iter, _op_precision(op, autocast_dtype))
            for (where, op), us in ops.items()]


def _on_cuda(engine) -> bool:
    """Whether the engine runs its model on a CUDA device."""
    device = getattr(engine, "device", None)
    return isinstance(device, torch.device) and device.type == "cuda"


def _timed_stages(engine, sample: Sample, iterations: int, nvtx: bool) -> tuple[dict[str, float], HostTimes, HostTimes]:
    """Median wall ms per iteration of each stage range, timed by the ranges themselves (a perf_counter pair
    per range, no profiler), the host times of those iterations, and of plain iterations (ranges off) in
    blocks before and after them."""
    stages_ms: dict[str, float] = {}

    def timed(count: int, warmup: int) -> HostTimes:
        run_end_to_end(engine.infer, sample, iterations=0, warmup=warmup)
        host, medians = ranged_iterations(engine.infer, sample, count, nvtx=nvtx, cuda=_on_cuda(engine))
        stages_ms.clear()  # only the latest attempt counts (see plain_profiled_plain)
        stages_ms.update(medians)
        return host

    reference, host = plain_profiled_plain(
        lambda count, warmup: run_end_to_end(engine.infer, sample, count, warmup), timed, iterations)
    return stages_ms, host, reference


def profile_torch(engine, variant, sample: Sample, iterations: int, trace_path: Path | None,
                  nvtx: bool = False) -> dict:
    """Stage times of end-to-end runs of a PyTorch engine from the stage ranges' own timers (between blocks of
    plain runs, the reference they must add up to), then `iterations` runs under torch.profiler for the
    operator table and the Chrome trace (`trace_path`, if given)."""
    hooks = instrument_detr(engine.model)
    try:
        with ranges_enabled(nvtx=nvtx):
            # Untimed warm-up with the hooks in place (torch.compile re-traces around them here).
            run_end_to_end(engine.infer, sample, iterations=0)
        timed_iterations = max(iterations, TIMED_ITERS)
        stages_ms, host, reference = _timed_stages(engine, sample, timed_iterations, nvtx)
        activities = [torch.profiler.ProfilerActivity.CPU]
        if _on_cuda(engine):
            activities.append(torch.profiler.ProfilerActivity.CUDA)  # kernels in the trace, under their stage
        with ranges_enabled(nvtx=nvtx), torch.profiler.profile(activities=activities) as prof:
            run_end_to_end(engine.infer, sample, iterations, warmup=0)
    finally:
        hooks.remove()
    if trace_path is not None:
        trace_path.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(trace_path))
    ops = _operator_times(prof.events(), iterations, getattr(engine, "dtype", None))
    blocks = {name: stages_ms.get(name, 0.0) for name in BLOCK_STAGES}
    blocks["other"] = max(host.infer_ms - sum(blocks.values()), 0.0)
    source = (f"stage ranges opened by forward hooks on DETR's blocks, each timed with perf_counter (no profiler), "
              f"median of {timed_iterations} end-to-end iterations at batch 1, between two blocks of as many plain "
              "ones (the end-to-end reference); other = inference time outside the blocks (mask/query set-up, Python)."
              f" Top operators: torch.profiler (CPU) over {iterations} "
              "more iterations, whose per-operator overhead (a few us) is included in their times.")
    notes = []
    if variant.engine.kind == "torch_compile":
        notes.append("torch.compile: the stage hooks split the compiled graph at block boundaries (graph breaks), "
                     "so fusion across blocks is lost while profiling; the timed latency had no hooks.")
    if _on_cuda(engine):
        notes.append("CUDA: each stage range waits for the GPU (torch.cuda.synchronize) at its edges, so stage "
                     "times are kernel times; the top-operator table is host (CPU) time, the trace has the kernels.")
    if variant.precision == "int8":
        notes.append("PyTorch dynamic INT8 quantizes nn.Linear only: convolutions always run in FP32.")
    return build_result(blocks_ms=blocks, host=host, reference=reference, engine_ms=host.infer_ms, ops=ops,
                        compute=compute_layers(engine.model), variant=variant, source=source, notes=notes)

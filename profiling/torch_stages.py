"""Stage breakdown of the PyTorch engines (eager, torch.compile, dynamic INT8, autocast) with torch.profiler:
the stage ranges opened by `instrument_detr`'s hooks are timed as wall time on the CPU, operators are
attributed to the innermost stage range around them."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch

from optim.models.blocks import block_of_module
from profiling.nvtx_ranges import detr_root, instrument_detr, ranges_enabled
from profiling.stages import BLOCK_STAGES, STAGES, HostTimes, OpTime, Sample, build_result, run_end_to_end

ATTRIBUTED = set(STAGES) | {"inference"}
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


def _attribute(events, iterations: int, autocast_dtype) -> tuple[dict[str, float], list[OpTime]]:
    """Mean ms per iteration of each stage range (inference included), and of each (stage, operator)."""
    ranges: dict[str, float] = defaultdict(float)
    ops: dict[tuple[str, str], float] = defaultdict(float)
    for event in events:
        if event.is_user_annotation:
            if event.name in ATTRIBUTED:
                ranges[event.name] += event.cpu_time_total
        elif event.self_cpu_time_total > 0:
            ops[(_stage_of(event), event.name)] += event.self_cpu_time_total
    per_iter = 1000.0 * max(iterations, 1)  # microseconds summed over iterations -> ms per iteration
    op_times = [OpTime(f"{where}/{op}", op, where, us / per_iter, _op_precision(op, autocast_dtype))
                for (where, op), us in ops.items()]
    return {name: us / per_iter for name, us in ranges.items()}, op_times


def profile_torch(engine, variant, sample: Sample, iterations: int, p50_ms: float, trace_path: Path | None,
                  nvtx: bool = False) -> dict:
    """Profile `iterations` end-to-end runs of a PyTorch engine; writes a Chrome trace to `trace_path` if given."""
    hooks = instrument_detr(engine.model)
    try:
        with ranges_enabled(nvtx=nvtx):
            # Untimed warm-up with the hooks in place (torch.compile re-traces around them here).
            run_end_to_end(engine.infer, sample, iterations=0)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                host = run_end_to_end(engine.infer, sample, iterations, warmup=0)
    finally:
        hooks.remove()
    if trace_path is not None:
        trace_path.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(trace_path))
    autocast_dtype = getattr(engine, "dtype", None)
    ranges, ops = _attribute(prof.events(), iterations, autocast_dtype)
    blocks = {name: ranges.get(name, 0.0) for name in BLOCK_STAGES}
    inference_ms = ranges.get("inference", host.infer_ms)
    blocks["other"] = max(inference_ms - sum(blocks.values()), 0.0)
    profiled = HostTimes(ranges.get("preprocess", host.preprocess_ms), host.infer_ms,
                         ranges.get("postprocess", host.postprocess_ms), host.iterations)
    compiled = variant.engine.kind == "torch_compile"
    source = (f"torch.profiler (CPU) over {iterations} end-to-end iterations at batch 1; stage = wall time of the "
              "record_function ranges opened by forward hooks on DETR's blocks; other = inference time outside "
              "them (mask/query set-up, output copies). Profiler overhead (a few us per operator) is included, "
              "so coverage above 1 measures it.")
    notes = []
    if compiled:
        notes.append("torch.compile: the stage hooks split the compiled graph at block boundaries (graph breaks), "
                     "so fusion across blocks is lost while profiling; the timed latency had no hooks.")
    if variant.precision == "int8":
        notes.append("PyTorch dynamic INT8 quantizes nn.Linear only: convolutions always run in FP32.")
    return build_result(blocks_ms=blocks, host=profiled, p50_ms=p50_ms, engine_ms=inference_ms, ops=ops,
                        compute=compute_layers(engine.model), variant=variant, source=source, notes=notes)

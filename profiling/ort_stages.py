"""Stage breakdown of the ONNX Runtime engine from ORT's own profiler: a second session on the same model
file, with the same threads, optimization level and providers, writes per-node kernel times as JSON."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

from optim.engines.onnx_export import OUTPUT_NAMES
from optim.errors import OptimError
from profiling.stages import (
    BLOCK_STAGES,
    WARMUP_ITERS,
    OpTime,
    Sample,
    build_result,
    plain_profiled_plain,
    run_end_to_end,
    stage_of_node,
)

# After ORT's graph optimizations a quantized QDQ unit runs as one of these integer kernels.
INT8_COMPUTE = {"QLinearConv", "QLinearMatMul", "QGemm", "MatMulInteger", "ConvInteger", "MatMulIntegerToFloat",
                "DynamicQuantizeMatMul", "QAttention"}
# Float kernels doing the arithmetic (the NCHWc / fused variants included).
FLOAT_COMPUTE = {"Conv", "MatMul", "Gemm", "FusedConv", "FusedMatMul", "FusedGemm", "NchwcConv", "ConvTranspose",
                 "Attention", "MultiHeadAttention"}
# ORT's tensor type names -> the precision shown in the report.
PRECISION_OF_TYPE = {"float": "fp32", "float16": "fp16", "bfloat16": "bf16", "double": "fp64", "uint8": "int8",
                     "int8": "int8", "int32": "int32", "int64": "int64", "bool": "bool"}
KERNEL_SUFFIX = "_kernel_time"


def is_int8_op(op_type: str) -> bool:
    """An integer compute kernel (what a fused QDQ unit becomes)."""
    return op_type in INT8_COMPUTE or "Integer" in op_type


def _precision(op_type: str, args: dict) -> str:
    """int8 for integer kernels, else the element type of the node's first input."""
    if is_int8_op(op_type) or op_type.startswith("QLinear"):
        return "int8"
    inputs = args.get("input_type_shape") or []
    if inputs and isinstance(inputs[0], dict) and inputs[0]:
        type_name = next(iter(inputs[0]))
        return PRECISION_OF_TYPE.get(type_name, type_name)
    return "unknown"


def parse_profile(events: list[dict], warmup_runs: int) -> tuple[dict[str, dict], list[float]]:
    """Per node (name -> op, precision, total microseconds, calls) and the `model_run` durations (us), of the
    runs after the first `warmup_runs` (their events are dropped by timestamp)."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    if len(runs) <= warmup_runs:
        raise OptimError(f"the ONNX Runtime profile holds {len(runs)} runs, fewer than the {warmup_runs} warm-up "
                         "runs plus at least one measured run", fix="profile more iterations")
    start = runs[warmup_runs]["ts"]
    nodes: dict[str, dict] = defaultdict(lambda: {"op": "", "precision": "", "us": 0.0, "calls": 0, "provider": ""})
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith(KERNEL_SUFFIX) or event["ts"] < start:
            continue
        args = event.get("args", {})
        node = nodes[event["name"][: -len(KERNEL_SUFFIX)]]
        node["op"] = args.get("op_name", "")
        node["precision"] = _precision(node["op"], args)
        node["provider"] = args.get("provider", "")
        node["us"] += float(event.get("dur", 0))
        node["calls"] += 1
    return dict(nodes), [float(e["dur"]) for e in runs[warmup_runs:]]


def _profiling_session(engine, prefix: str):
    """A profiling twin of the engine's session: same file, threads, optimization level and providers."""
    import onnxruntime as ort

    current = engine.session.get_session_options()
    options = ort.SessionOptions()
    options.intra_op_num_threads = current.intra_op_num_threads
    options.inter_op_num_threads = current.inter_op_num_threads
    options.execution_mode = current.execution_mode
    options.graph_optimization_level = current.graph_optimization_level
    options.enable_profiling = True
    options.profile_file_prefix = prefix
    providers = engine.session.get_providers()
    provider_options = engine.session.get_provider_options()
    return ort.InferenceSession(str(engine.model_path), options, providers=providers,
                                provider_options=[provider_options.get(p, {}) for p in providers])


def profile_ort(engine, variant, sample: Sample, iterations: int, trace_path: Path | None) -> dict:
    """Profile `iterations` end-to-end runs through a profiling session (the ORT JSON goes to `trace_path`), then
    time as many on the same session with profiling ended (to measure and remove the profiler's own cost),
    between two blocks of plain runs of the engine (the end-to-end reference)."""
    with tempfile.TemporaryDirectory(prefix="ort-profile-") as tmp:
        session = _profiling_session(engine, str(Path(tmp) / "ort"))
        infer = lambda pixels: session.run(OUTPUT_NAMES, {"pixel_values": pixels})
        run_end_to_end(infer, sample, iterations)
        profile_file = Path(session.end_profiling())
        # Profiling is off from here on.
        reference, host = plain_profiled_plain(
            lambda count, warmup: run_end_to_end(engine.infer, sample, count, warmup),
            lambda count, warmup: run_end_to_end(infer, sample, count, warmup), iterations)
        events = json.loads(profile_file.read_text())
        if trace_path is not None:
            trace_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(profile_file), trace_path)
    nodes, runs_us = parse_profile(events, WARMUP_ITERS)
    runs = max(len(runs_us), 1)
    profiled_ms = sum(runs_us) / 1000.0 / runs
    calls_per_run = sum(node["calls"] for node in nodes.values()) / runs
    # The profiler costs about the same per node call whatever the kernel: spread the measured difference
    # between profiled and unprofiled runs evenly over the node calls and take it off each node's time (on a
    # tiny graph whose kernels take no longer than that, a block of small kernels can read 0).
    per_call_ms = max(profiled_ms - host.infer_ms, 0.0) / max(calls_per_run, 1.0)
    ops, blocks, compute = [], defaultdict(float), []
    for name, node in nodes.items():
        where = stage_of_node(name)
        ms = max(node["us"] / 1000.0 / runs - per_call_ms * node["calls"] / runs, 0.0)
        blocks[where] += ms
        ops.append(OpTime(name, node["op"], where, ms, node["precision"]))
        if is_int8_op(node["op"]) or node["op"] in FLOAT_COMPUTE:
            compute.append((name, where, is_int8_op(node["op"])))
    kernels_ms = sum(blocks.values())
    blocks["runtime"] = max(host.infer_ms - kernels_ms, 0.0)
    source = (f"ONNX Runtime profiler (enable_profiling) on a second session over {iterations} end-to-end iterations "
              f"at batch 1, providers {', '.join(sorted({n['provider'] for n in nodes.values()}))}; node kernel "
              f"times grouped by the DETR block in each node's name (other = unattributed nodes). Profiled runs took "
              f"{profiled_ms:.3f} ms (mean), the same session unprofiled {host.infer_ms:.3f} ms (median): the "
              f"difference, {1000 * per_call_ms:.1f} us per node call over {calls_per_run:.0f} calls, is the "
              f"profiler's own cost and is taken off each node's time. Node kernels: {kernels_ms:.3f} ms; the rest "
              "of the unprofiled run is ORT's executor overhead (stage runtime).")
    return build_result(blocks_ms={name: blocks.get(name, 0.0) for name in (*BLOCK_STAGES, "other", "runtime")},
                        host=host, reference=reference, engine_ms=host.infer_ms, ops=ops, compute=compute,
                        variant=variant, source=source)

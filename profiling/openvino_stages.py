"""Stage breakdown of the OpenVINO engine from the CPU plugin's performance counters (PERF_COUNT): per
executed layer, its runtime type, kernel (exec_type, whose suffix is the precision it ran in) and time."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from optim.engines.onnx_export import OUTPUT_NAMES
from profiling.stages import (
    BLOCK_STAGES,
    HostTimes,
    OpTime,
    Sample,
    build_result,
    plain_profiled_plain,
    run_end_to_end,
    stage_of_node,
)

# Runtime layer types doing the arithmetic (after the plugin's fusions).
COMPUTE_TYPES = {"Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "FullyConnectedQuantized",
                 "FullyConnectedQuantizedLegacy", "MatMul", "ScaledDotProductAttention"}
# Compile-time properties carried over from the engine's compiled model, so the profiled one runs the same way.
COPIED_PROPERTIES = ("INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "EXECUTION_MODE_HINT",
                     "NUM_STREAMS", "ENABLE_CPU_PINNING", "ENABLE_HYPER_THREADING")
PRECISION_OF_SUFFIX = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "i8": "int8", "u8": "int8", "i32": "int32",
                       "i64": "int64"}


def precision_of(exec_type: str) -> str:
    """The precision a kernel ran in, from its name's suffix ("brgemm_avx512_I8" -> int8)."""
    suffix = exec_type.rsplit("_", 1)[-1].lower()
    return PRECISION_OF_SUFFIX.get(suffix, suffix or "unknown")


def _profiling_model(engine):
    """The engine's model compiled again with PERF_COUNT and the engine's compile settings. Always a fresh
    compile: the plugin's counters are averages over every inference a model ran, warm-up and timing included."""
    import openvino as ov

    compiled = engine.compiled
    supported = compiled.get_property("SUPPORTED_PROPERTIES")
    config = {name: compiled.get_property(name) for name in COPIED_PROPERTIES if name in supported}
    config["PERF_COUNT"] = True
    device = compiled.get_property("EXECUTION_DEVICES")[0]
    return ov.Core().compile_model(engine.ov_model, device, config)


class _CountingRequest:
    """An infer request that times each inference and snapshots the per-layer counters on demand.

    The CPU plugin reports each layer's real time as a running mean over all inferences of the request
    (verified: n x mean_n - (n-1) x mean_(n-1) gives each inference's own time), so the mean over a window
    of inferences comes from two snapshots."""

    def __init__(self, compiled):
        self.request = compiled.create_infer_request()
        self.calls = 0
        self.timing = False
        self.infer_s: list[float] = []

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, ...]:
        start = time.perf_counter()
        self.request.infer({"pixel_values": pixels})
        elapsed = time.perf_counter() - start
        self.calls += 1
        if self.timing:
            self.infer_s.append(elapsed)
        return tuple(np.array(self.request.get_tensor(name).data) for name in OUTPUT_NAMES)

    def snapshot(self) -> tuple[int, dict[str, dict]]:
        """(inferences so far, {layer: type, exec_type, total microseconds so far}) of the executed layers."""
        layers = {}
        for info in self.request.get_profiling_info():
            if info.status == info.Status.EXECUTED:
                layers[info.node_name] = {"type": info.node_type, "exec_type": info.exec_type,
                                          "us": info.real_time.total_seconds() * 1e6 * self.calls}
        return self.calls, layers


def _counted_block(request: _CountingRequest, sample: Sample, iterations: int, warmup: int,
                   before: list[tuple[int, dict]]) -> HostTimes:
    """`warmup` untimed then `iterations` timed runs of the counting request; the counters' snapshot after the
    warm-up goes to `before` (the window the counters are averaged over starts there)."""
    run_end_to_end(request, sample, iterations=0, warmup=warmup)
    before.append(request.snapshot())
    request.timing = True
    return run_end_to_end(request, sample, iterations, warmup=0)


def _window_means(before: tuple[int, dict], after: tuple[int, dict]) -> dict[str, dict]:
    """Mean microseconds per inference of each layer between two snapshots."""
    count = max(after[0] - before[0], 1)
    return {name: {**layer, "us": max(layer["us"] - before[1].get(name, {}).get("us", 0.0), 0.0) / count}
            for name, layer in after[1].items()}


def profile_openvino(engine, variant, sample: Sample, iterations: int, counters_path: Path | None) -> dict:
    """Profile `iterations` end-to-end runs with per-layer counters, between two blocks of plain runs of the
    engine (the reference); the averaged counters go to `counters_path`."""
    request = _CountingRequest(_profiling_model(engine))
    before: list[tuple[int, dict]] = []
    reference, host = plain_profiled_plain(
        lambda count, warmup: run_end_to_end(engine.infer, sample, count, warmup),
        lambda count, warmup: _counted_block(request, sample, count, warmup, before), iterations)
    layers = _window_means(before[-1], request.snapshot())  # the latest attempt's profiled block
    ops, blocks, compute = [], defaultdict(float), []
    for name, layer in layers.items():
        where = stage_of_node(name)
        ms = layer["us"] / 1000.0
        precision = precision_of(layer["exec_type"])
        blocks[where] += ms
        ops.append(OpTime(name, layer["type"], where, ms, precision))
        if layer["type"] in COMPUTE_TYPES:
            compute.append((name, where, precision == "int8"))
    if counters_path is not None:
        counters_path.parent.mkdir(parents=True, exist_ok=True)
        counters_path.write_text(json.dumps(
            [{"node_name": name, "node_type": layer["type"], "exec_type": layer["exec_type"],
              "precision": precision_of(layer["exec_type"]), "stage": stage_of_node(name),
              "mean_ms": round(layer["us"] / 1000.0, 5)}
             for name, layer in sorted(layers.items(), key=lambda item: -item[1]["us"])], indent=1))
    layers_ms = sum(blocks.values())
    engine_ms = 1000.0 * float(np.median(request.infer_s)) if request.infer_s else 0.0
    source = (f"OpenVINO CPU performance counters (PERF_COUNT) over {iterations} end-to-end iterations at batch 1; "
              f"between two blocks of plain runs of the engine (the end-to-end reference); "
              f"executed layers' real time grouped by the DETR block in each layer's name (other = unattributed "
              f"layers); precision from the kernel name. One inference took {engine_ms:.3f} ms wall time with the "
              f"counters on, of which layers are {layers_ms:.3f} ms; the rest is the runtime's own overhead "
              "(stage runtime).")
    blocks["runtime"] = max(engine_ms - layers_ms, 0.0)
    return build_result(blocks_ms={name: blocks.get(name, 0.0) for name in (*BLOCK_STAGES, "other", "runtime")},
                        host=host, reference=reference, engine_ms=engine_ms, ops=ops, compute=compute, variant=variant,
                        source=source)

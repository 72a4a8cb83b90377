"""The stage breakdown every engine profiler returns, and what they share: one real image run end to end
(preprocess -> engine -> postprocess, each inside its stage range) and the attribution of graph nodes to
DETR's stages.

Result (JSON-ready dict):
    total_ms          sum of stages_ms (what the profiler attributes, per image, batch 1)
    end_to_end_ms     median end-to-end time of plain (unprofiled) iterations of the engine, in blocks just
                      before and after the profiled ones (see `plain_profiled_plain`)
    timed_p50_ms      the runner's timed p50 at batch 1 (minutes earlier: machine drift shows between the two)
    coverage          total_ms / end_to_end_ms (how much of the real time the breakdown explains)
    engine_ms         the engine's own time per inference in the profiled run
    stages_ms         {preprocess, backbone, encoder, decoder, heads, postprocess, other, runtime}
    top_ops           the 15 slowest operators: {name, op, stage, ms, precision}
    int8_ops / float_ops  compute operators (convolutions, matrix products) by runtime precision
    fallback_warning  an INT8 variant whose compute operators run in float outside keep_float, else None
    source            how the figures were obtained
    steady            whether the machine stayed in its steady state around the profile (see
                      `plain_profiled_plain`); False adds a note
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from optim.data.transforms import preprocess_image
from optim.engines.onnx_export import OUTPUT_NAMES
from optim.evaluation.postprocess import postprocess
from optim.machine_load import MACHINE_SPEED, SpeedReference, speed_probe_ms
from optim.models.blocks import block_of_node
from profiling.nvtx_ranges import ranges_enabled, stage

# other = operators outside DETR's blocks; runtime = the engine's time outside any operator (executor,
# scheduling, copies), measured as its run time minus its operators' (graph engines only).
STAGES = ("preprocess", "backbone", "encoder", "decoder", "heads", "postprocess", "other", "runtime")
BLOCK_STAGES = ("backbone", "encoder", "decoder", "heads")
TOP_OPS = 15
WARMUP_ITERS = 3
ATTEMPTS = 3  # plain / profiled / plain sequences run until the machine was steady throughout
BLOCK_AGREEMENT = 0.10  # the two plain blocks must agree within this for a steady profile


@dataclass
class OpTime:
    """Mean time per inference of one operator (graph node, or PyTorch op within a stage)."""

    name: str
    op: str
    stage: str
    ms: float
    precision: str

    def as_dict(self) -> dict:
        return {"name": self.name, "op": self.op, "stage": self.stage, "ms": round(self.ms, 4),
                "precision": self.precision}


@dataclass
class Sample:
    """One real evaluation image, decoded once, that end-to-end iterations preprocess again each time."""

    image: object  # PIL.Image.Image, RGB
    orig_size: np.ndarray  # (1, 2) as (height, width)
    input_size: tuple[int, int]


@dataclass
class HostTimes:
    """Median wall time per iteration of each part of an end-to-end iteration (milliseconds)."""

    preprocess_ms: float
    infer_ms: float
    postprocess_ms: float
    iterations: int
    steady: bool | None = None  # for a reference: timed with the machine steady (see plain_profiled_plain)

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.infer_ms + self.postprocess_ms


def sample_of(data) -> Sample:
    """The first image of the experiment's evaluation split (an `ExperimentData`)."""
    dataset = data.eval_set
    image = dataset.load_image(dataset.image_ids[0])
    return Sample(image, np.array([[image.height, image.width]]), tuple(data.input_size))


def run_end_to_end(infer: Callable[[np.ndarray], Sequence[np.ndarray]], sample: Sample, iterations: int,
                   warmup: int = WARMUP_ITERS) -> HostTimes:
    """`warmup` untimed then `iterations` timed end-to-end iterations at batch 1, each part inside its stage
    range ("preprocess", "inference", "postprocess"), so that profilers attribute them. Returns each part's
    median over the timed iterations (robust to the odd slow iteration of a busy machine)."""
    parts = []
    for index in range(warmup + iterations):
        start = time.perf_counter()
        with stage("preprocess"):
            pixels = preprocess_image(sample.image, sample.input_size).numpy()[None]
        inferred = time.perf_counter()
        with stage("inference"):
            logits, boxes = infer(pixels)[:2]
        postprocessed = time.perf_counter()
        with stage("postprocess"):
            postprocess(logits, boxes, sample.orig_size)
        end = time.perf_counter()
        if index >= warmup:
            parts.append(HostTimes(1000.0 * (inferred - start), 1000.0 * (postprocessed - inferred),
                                   1000.0 * (end - postprocessed), 1))
    return median_times(parts)


def median_times(times: Sequence[HostTimes]) -> HostTimes:
    """Each part's median over several HostTimes (one per iteration)."""
    if not times:
        return HostTimes(0.0, 0.0, 0.0, 0)
    parts = np.median(np.asarray([(t.preprocess_ms, t.infer_ms, t.postprocess_ms) for t in times]), axis=0)
    return HostTimes(float(parts[0]), float(parts[1]), float(parts[2]), len(times))


def ranged_iterations(infer: Callable[[np.ndarray], Sequence[np.ndarray]], sample: Sample, iterations: int,
                      nvtx: bool = False, cuda: bool = False) -> tuple[HostTimes, dict[str, float]]:
    """`iterations` end-to-end iterations at batch 1, each with the stage ranges timing themselves (perf_counter,
    no profiler; waiting for the GPU at their edges when `cuda`); their median HostTimes and the median ms of
    each stage range (a range an iteration did not open counts 0 there)."""
    times, per_iteration = [], []
    for _ in range(iterations):
        seconds: dict[str, float] = {}
        with ranges_enabled(nvtx=nvtx, seconds=seconds, labels=False, cuda=cuda):
            times.append(run_end_to_end(infer, sample, iterations=1, warmup=0))
        per_iteration.append(seconds)
    names = set().union(*per_iteration) if per_iteration else set()
    return median_times(times), {name: 1000.0 * float(np.median([it.get(name, 0.0) for it in per_iteration]))
                                 for name in sorted(names)}


def plain_profiled_plain(plain: Callable[[int, int], HostTimes], profiled: Callable[[int, int], HostTimes],
                         iterations: int, warmup: int = WARMUP_ITERS, probe: Callable[[], float] = speed_probe_ms,
                         speed: SpeedReference = MACHINE_SPEED) -> tuple[HostTimes, HostTimes]:
    """A block of plain iterations, a block of profiled ones, a block of plain ones again (each callable runs
    `(iterations, warmup)` end-to-end iterations and returns their medians); the plain blocks' mean (with
    `steady` set) and the profiled block. `profiled` must keep only what its latest call measured.

    A cloud vCPU's speed drifts (the lab's VM switches between a fast and a slow state), so a profile is only
    comparable with plain iterations run around it, in the same state: the machine speed probe is taken
    before, between and after the blocks, and the three blocks are run again (up to ATTEMPTS times) until
    every probe shows the steady state and the two plain blocks agree within BLOCK_AGREEMENT. Blocks rather
    than alternating single iterations, because two engine instances alternating fight over the cores (ONNX
    Runtime's and OpenVINO's worker threads keep spinning after a run)."""
    for _ in range(ATTEMPTS):
        probes = [probe()]
        before = plain(iterations, warmup)
        probes.append(probe())
        during = profiled(iterations, warmup)
        probes.append(probe())
        after = plain(iterations, warmup)
        probes.append(probe())
        for value in probes:
            speed.observe(value)
        mean_ms = (before.total_ms + after.total_ms) / 2
        agree = abs(before.total_ms - after.total_ms) <= BLOCK_AGREEMENT * mean_ms
        steady = agree and all(speed.is_steady(value) for value in probes)
        if steady:
            break
    reference = HostTimes(*((getattr(before, f) + getattr(after, f)) / 2 for f in
                            ("preprocess_ms", "infer_ms", "postprocess_ms")), before.iterations + after.iterations,
                          steady=steady)
    return reference, during


def stage_of_node(node_name: str) -> str:
    """The stage of an ONNX / OpenVINO node: its DETR block, "heads" for the nodes named after the model's
    outputs (the classifier / box head producing them), else "other"."""
    block = block_of_node(node_name)
    if block is not None:
        return block
    if node_name.split("/")[0].split(".")[0].removesuffix("_original") in OUTPUT_NAMES:
        return "heads"
    return "other"


def fallback_warning(variant_precision: str, compute: list[tuple[str, str, bool]],
                     keep_float: Sequence[str]) -> str | None:
    """For an INT8 variant: which compute operators (name, stage, runs_int8) still run in float outside the
    blocks deliberately kept in float; None when all of them run in INT8 or the variant is not INT8."""
    if variant_precision != "int8" or not compute:
        return None
    floats = [(name, where) for name, where, is_int8 in compute if not is_int8 and where not in keep_float]
    if not floats:
        return None
    by_stage = ", ".join(f"{where} {count}" for where, count in Counter(w for _, w in floats).most_common())
    kept = f" (keep_float: {', '.join(keep_float)})" if keep_float else ""
    if len(floats) == len(compute):
        return (f"none of the {len(compute)} compute ops runs in INT8 ({by_stage}): the quantization had no effect "
                "at run time")
    return (f"{len(floats)} of {len(compute)} compute ops run in float outside keep_float blocks{kept}: {by_stage}; "
            f"e.g. {floats[0][0]}")


def build_result(*, blocks_ms: dict[str, float], host: HostTimes, reference: HostTimes, engine_ms: float,
                 ops: list[OpTime], compute: list[tuple[str, str, bool]], variant, source: str,
                 notes: list[str] | None = None) -> dict:
    """Assemble the result dict; `blocks_ms` holds backbone/encoder/decoder/heads/other(/runtime) per inference,
    `reference` the plain (unprofiled) iterations around the profiled ones, which the breakdown must
    add up to."""
    stages_ms = {name: 0.0 for name in STAGES}
    stages_ms.update({name: float(ms) for name, ms in blocks_ms.items()})
    stages_ms["preprocess"] = host.preprocess_ms
    stages_ms["postprocess"] = host.postprocess_ms
    total = sum(stages_ms.values())
    end_to_end = reference.total_ms
    unsteady_note = (f"the machine was not steady around the profile after {ATTEMPTS} attempts (speed probe or "
                     "the two plain blocks moved), so coverage may be off by the machine's drift")
    unsteady = [unsteady_note] if reference.steady is False else []
    quantize = next((s for s in variant.steps if s.kind == "quantize"), None)
    return {
        "total_ms": round(total, 4),
        "end_to_end_ms": round(end_to_end, 4),
        "coverage": round(total / end_to_end, 4) if end_to_end > 0 else None,
        "engine_ms": round(engine_ms, 4),
        "stages_ms": {name: round(ms, 4) for name, ms in stages_ms.items()},
        "top_ops": [op.as_dict() for op in sorted(ops, key=lambda o: o.ms, reverse=True)[:TOP_OPS]],
        "int8_ops": sum(1 for _, _, is_int8 in compute if is_int8),
        "float_ops": sum(1 for _, _, is_int8 in compute if not is_int8),
        "fallback_warning": fallback_warning(variant.precision, compute, quantize.keep_float if quantize else []),
        "source": source,
        "iterations": host.iterations,
        "batch_size": 1,
        "steady": reference.steady,
        "notes": list(notes or []) + unsteady,
    }

"""Measure one variant: apply its compression steps, build its engine (with quantization), then score
accuracy on the evaluation split, latency at each batch size, size and (optionally) a stage profile."""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import torch
from tqdm import tqdm

from optim.engines.base import BuildContext, BuildInfo
from optim.engines.registry import check_available, create_engine
from optim.eval_data import ExperimentData, detections_to_json, predict
from optim.evaluation.coco_eval import fidelity
from optim.evaluation.postprocess import Detections
from optim.latency import measure
from optim.spec import ExperimentSpec, QuantizeStep, VariantSpec
from optim.timing.variant_latency import measure_variant_latency


@dataclass
class VariantOutcome:
    """A finished variant's record (JSON-ready) and its detections."""

    record: dict
    detections: dict[int, Detections] = field(default_factory=dict)


def _artifact_size(path: Path | None, model) -> int:
    """Bytes on disk of what the engine runs (ONNX / IR .xml+.bin / plan), else of the safetensors weights."""
    if path is not None and Path(path).exists():
        files = [Path(path)] + ([Path(path).with_suffix(".bin")] if Path(path).suffix == ".xml" else [])
        data = [f for f in Path(path).parent.glob(Path(path).name + ".data")]  # ONNX external data, if any
        return sum(f.stat().st_size for f in files + data if f.exists())
    from safetensors.torch import save

    tensors = {k: v.contiguous() for k, v in model.state_dict().items() if hasattr(v, "contiguous")}
    return len(save(tensors))


def apply_model_steps(base_model, variant: VariantSpec, data: ExperimentData, cache: dict,
                      artifacts_dir: Path) -> tuple[torch.nn.Module, list[str]]:
    """Run the variant's prune/distill steps in order on a copy of the base model.

    Results are cached per chain prefix (in memory, keyed by the steps' resolved specs), so variants that
    share `prune -> distill` and differ only in quantization or engine compress the model once; a
    distillation's checkpoints live under `artifacts/_compressed/<key>/`, so an interrupted run resumes it.
    """
    model, notes, prefix = base_model, [], []
    for step in variant.steps:
        if isinstance(step, QuantizeStep):
            break
        prefix.append(step.model_dump(mode="json"))
        key = hashlib.sha1(json.dumps(prefix, sort_keys=True).encode()).hexdigest()[:12]
        if key not in cache:
            with _exclusive(artifacts_dir / "_compressed" / f"{key}.lock"):
                cache[key] = _apply_step(model, step, data, base_model, artifacts_dir / "_compressed" / key, notes)
        model, notes = cache[key]
    return copy.deepcopy(model).eval(), list(notes)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an advisory lock on `path`: Ray workers that need the same compressed model take turns, and the second
    resumes the first's finished distillation checkpoint instead of training alongside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _apply_step(model, step, data: ExperimentData, teacher, workdir: Path, notes: list[str]):
    """One prune or distill step; returns (model, notes so far)."""
    if step.kind == "prune":
        from optim.compress.apply import apply_prune

        result = apply_prune(model, step, calibration=[torch.from_numpy(b) for b in data.calibration_batches],
                             train_data=data.train_set() if step.finetune_steps > 0 else None)
    else:
        from optim.compress.apply import apply_distill
        from optim.models.zoo import load_model

        teacher_model = teacher if step.teacher == "baseline" else load_model(step.teacher).model
        result = apply_distill(model, teacher_model, step, data.train_set(), workdir)
    return result.model.eval(), notes + result.notes


@dataclass
class BuiltVariant:
    """A variant's engine, ready to infer, with what building it produced."""

    engine: object
    build: BuildInfo
    model: torch.nn.Module | None  # the float model after prune/distill (None when loaded from an artifact)
    quantize: QuantizeStep | None
    notes: list[str]
    stats: dict = field(default_factory=dict)  # params and FLOPs of the model before the engine built it


def build_variant(variant: VariantSpec, spec: ExperimentSpec, data: ExperimentData, base_model, workdir: Path,
                  cache: dict) -> BuiltVariant:
    """Apply the variant's steps and build its engine (export, quantization); the caller closes `engine`."""
    quantize = next((s for s in variant.steps if isinstance(s, QuantizeStep)), None)
    check_available(variant.engine, quantize.method if quantize else None)
    if spec.scenarios:
        from optim.parallel.loadgen_run import loadgen

        loadgen()  # the 'parallel' extra: fail before the slow steps
    workdir.mkdir(parents=True, exist_ok=True)
    model, notes = apply_model_steps(base_model, variant, data, cache, workdir.parent)

    from optim.compress.stats import model_stats

    stats = model_stats(model, data.input_size)
    engine = create_engine(variant.engine)
    context = BuildContext(workdir=workdir, input_size=data.input_size, calibration=data.calibration_batches,
                           batch_sizes=tuple(sorted({*spec.batch_sizes, spec.eval_batch_size})),
                           threads=spec.latency.threads, seed=spec.seed,
                           evaluate_torch=lambda forward: _tuning_map(forward, data, spec))
    if variant.engine.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        build = engine.build(model, quantize, context)
    except BaseException:
        engine.close()
        raise
    return BuiltVariant(engine, build, model, quantize, notes + build.notes, stats)


def load_built_variant(variant: VariantSpec, spec: ExperimentSpec, data: ExperimentData, base_model, workdir: Path,
                       cache: dict) -> BuiltVariant:
    """The variant as an earlier `build_variant` left it in `workdir`, for timing in another process: an engine that
    runs from a file loads that very file; one that keeps its model in memory is built again (same steps)."""
    quantize = next((s for s in variant.steps if isinstance(s, QuantizeStep)), None)
    engine = create_engine(variant.engine)
    artifact = engine.artifact_in(workdir, quantize)
    if artifact is None or not Path(artifact).is_file():
        built = build_variant(variant, spec, data, base_model, workdir, cache)
        built.notes = ["timing: the in-memory engine was built again on the timing node"]
        return built
    check_available(variant.engine, quantize.method if quantize else None)
    engine.load(artifact, quantize, spec.latency.threads)
    model = None
    if _profiles(spec.profile_of(variant)):  # the stage profile runs the float model
        model, _ = apply_model_steps(base_model, variant, data, cache, workdir.parent)
    return BuiltVariant(engine, BuildInfo(artifact=Path(artifact)), model, quantize, [])


def score_variant(built: BuiltVariant, variant: VariantSpec, spec: ExperimentSpec, data: ExperimentData,
                  baseline_detections: dict[int, Detections] | None) -> VariantOutcome:
    """Accuracy, fidelity, size and model statistics of a built variant (no timing)."""
    engine, stats = built.engine, built.stats
    start = time.perf_counter()
    engine.infer(data.example(spec.eval_batch_size))
    first_inference_ms = (time.perf_counter() - start) * 1000
    with tqdm(total=len(data.eval_set), desc=f"{variant.name}: accuracy", unit="img", leave=False) as bar:
        detections = predict(engine.infer, data.eval_batches, spec.eval_batch_size, bar)
    accuracy = data.score(detections)
    is_baseline = variant.name == spec.baseline_name  # without a baseline's detections: no fidelity (n/a)
    accuracy["fidelity"] = 1.0 if is_baseline else fidelity(baseline_detections, detections) if baseline_detections else None
    accuracy["images"] = len(detections)
    record = {
        "engine": variant.engine.kind, "device": variant.engine.device, "precision": variant.precision,
        "steps": [s.model_dump(mode="json") for s in variant.steps], "accuracy": accuracy,
        "build_seconds": round(built.build.build_seconds, 3), "first_inference_ms": round(first_inference_ms, 2),
        "model_size_bytes": _artifact_size(built.build.artifact, built.model),
        "artifact": Path(built.build.artifact).name if built.build.artifact else None,  # in artifacts/<variant>/
        "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
        # PyTorch's intra-op threads and the engine's own (None: its default, every core) while scoring
        "accuracy_threads": {"pytorch": torch.get_num_threads(), "engine": spec.latency.threads},
        "params": stats["params"], "flops": stats["flops"],
        "notes": list(built.notes), "detections": detections_to_json(detections),
    }
    return VariantOutcome(record, detections)


def time_variant(built: BuiltVariant, variant: VariantSpec, spec: ExperimentSpec, data: ExperimentData,
                 workdir: Path) -> tuple[dict, list[str]]:
    """(latency, timing cross-check, scenarios and profile fields of the record, notes); empty figures when the
    spec is accuracy-only (`latency.enabled: false`)."""
    if not spec.latency.enabled:
        return {"latency": {}, "timing": None, "stages": None, "profile_files": {}, "threads": None}, []
    engine, notes = built.engine, []
    synchronize = _synchronizer(variant)
    tqdm.write(f"{variant.name}: timing")
    latency, timing = measure_variant_latency(engine, built.quantize, built.build.artifact,
                                              {size: data.example(size) for size in spec.batch_sizes},
                                              spec.latency, synchronize, workdir)
    figures = {"latency": latency, "timing": timing, "threads": spec.latency.threads or torch.get_num_threads()}
    if spec.scenarios:
        figures["parallel"] = _scenarios(engine, built.build.artifact, data.input_size, spec, workdir)
    if variant.engine.device == "cuda":  # TensorRT allocates its engine memory itself: its size is in the build notes
        notes.append(f"peak CUDA memory allocated through PyTorch: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    stages = profile_files = None
    profile = spec.profile_of(variant)
    if _profiles(profile):
        from profiling.run import profile_variant

        # The stage breakdown runs at batch 1: compare it with the batch-1 latency.
        single = latency.get("1") or measure(lambda: engine.infer(data.example(1)), spec.latency, 1,
                                             synchronize).as_dict()
        stages, profile_files = profile_variant(engine, built.model, variant, profile, data, workdir.parent.parent,
                                                single["p50_ms"])
    figures.update(stages=stages, profile_files=profile_files or {})
    return figures, notes


def run_variant(variant: VariantSpec, spec: ExperimentSpec, data: ExperimentData, base_model,
                baseline_detections: dict[int, Detections] | None, workdir: Path, cache: dict) -> VariantOutcome:
    """Everything measured about one variant; raises on failure (the runner records the reason)."""
    built = build_variant(variant, spec, data, base_model, workdir, cache)
    try:
        outcome = score_variant(built, variant, spec, data, baseline_detections)
        figures, notes = time_variant(built, variant, spec, data, workdir)
        outcome.record.update(figures)
        outcome.record["notes"] += notes
        return outcome
    finally:
        built.engine.close()


def _profiles(profile) -> bool:
    return profile.stages or profile.torch_profiler or profile.pyinstrument or profile.nvtx


def _scenarios(engine, artifact, input_size, spec: ExperimentSpec, workdir: Path) -> dict:
    """The MLPerf scenarios of `spec.scenarios` on the built engine; the multistream trace is also written to
    `parallel-trace.json` beside the variant's artifacts. An engine without a parallel runner gives an error
    entry (the variant's other figures stand)."""
    from optim.errors import OptimError
    from optim.parallel.measure import measure_scenarios

    tqdm.write(f"{engine.kind}: scenarios {', '.join(spec.scenarios.run)}")
    try:
        results = measure_scenarios(engine, artifact, input_size, spec.scenarios)
    except OptimError as error:
        return {"error": str(error)}
    trace = (results.get("multistream") or {}).get("trace")
    if trace:
        (workdir / "parallel-trace.json").write_text(json.dumps(trace))
        results["multistream"]["trace_file"] = f"artifacts/{workdir.name}/parallel-trace.json"
    return results


def _synchronizer(variant: VariantSpec):
    """CUDA synchronization for GPU engines, so that timings include the kernels, not just launches."""
    if variant.engine.device != "cuda":
        return None
    return torch.cuda.synchronize


def _tuning_map(forward, data: ExperimentData, spec: ExperimentSpec) -> float:
    """mAP of a candidate model on the calibration split: accuracy-aware tuning (INC) never sees eval images.

    `forward` maps a float32 (B, 3, H, W) tensor to (logits, pred_boxes)."""
    from optim.evaluation.coco_eval import coco_metrics

    def infer(pixels):
        with torch.no_grad():
            return tuple(t.detach().float().numpy() for t in forward(torch.from_numpy(pixels)))

    dataset = data.calibration_set
    detections = predict(infer, data.calibration_image_batches, spec.eval_batch_size)
    return coco_metrics(dataset.coco, detections, data.label_map)["map"]

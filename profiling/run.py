"""Profile one variant after its latency was timed (never during): the per-stage breakdown of its engine,
a torch.profiler Chrome trace (PyTorch engines), a pyinstrument call tree (any engine), and NVTX stage
ranges for an Nsight Systems capture."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from optim.errors import MissingExtraError
from optim.spec import ProfileSpec
from profiling.nvtx_ranges import instrument_detr, ranges_enabled
from profiling.stages import Sample, run_end_to_end, sample_of

TORCH_ENGINES = ("pytorch", "torch_compile")
STAGE_ENGINES = (*TORCH_ENGINES, "onnxruntime", "openvino")
TARGET_SECONDS = 2.0  # profiled iterations per profiler: about this long, within the bounds below
# At most 20: torch.profiler's post-processing costs ~50 us per recorded operator, and ORT's JSON grows by
# one event per node and run (a DETR-R50 run is ~1 MB of trace).
MIN_ITERS, MAX_ITERS = 5, 20
NVTX_NOTE = ("NVTX ranges (preprocess, inference, backbone, encoder, decoder, heads, postprocess) were emitted "
             "around the profiled iterations; they are only recorded when the run is captured by an Nsight tool "
             "(nsys profile -t nvtx,cuda python -m optim.run SPEC.yaml, or ncu --nvtx; "
             "python -m profiling.nvtx_capture does the same without a whole experiment).")


def iterations_for(p50_ms: float, target_s: float = TARGET_SECONDS) -> int:
    """How many iterations to profile: ~`target_s` seconds of inference, at least 5, at most 20."""
    return int(min(MAX_ITERS, max(MIN_ITERS, target_s * 1000.0 / max(p50_ms, 1e-3))))


def _traces(out_dir: Path, variant_name: str, suffix: str) -> tuple[Path, str]:
    relative = f"traces/{variant_name}.{suffix}"
    return out_dir / relative, relative


def _stage_breakdown(engine, variant, sample: Sample, iterations: int, profile: ProfileSpec,
                     out_dir: Path, files: dict[str, str]) -> dict | None:
    """The engine's stage breakdown (writing its trace / counters file), or None for an engine without one."""
    kind = variant.engine.kind
    if kind in TORCH_ENGINES:
        from profiling.torch_stages import profile_torch

        path, relative = _traces(out_dir, variant.name, "torch.json")
        result = profile_torch(engine, variant, sample, iterations,
                               path if profile.torch_profiler else None, nvtx=profile.nvtx)
        if profile.torch_profiler:
            files["torch_profiler"] = relative
        return result
    with ranges_enabled(nvtx=profile.nvtx):
        if kind == "onnxruntime":
            from profiling.ort_stages import profile_ort

            path, relative = _traces(out_dir, variant.name, "ort.json")
            result = profile_ort(engine, variant, sample, iterations, path)
            files["onnxruntime"] = relative
            return result
        if kind == "openvino":
            from profiling.openvino_stages import profile_openvino

            path, relative = _traces(out_dir, variant.name, "ov_counters.json")
            result = profile_openvino(engine, variant, sample, iterations, path)
            files["openvino"] = relative
            return result
    return None


def _nvtx_only(engine, variant, sample: Sample, iterations: int) -> None:
    """End-to-end iterations inside NVTX stage ranges (block ranges too on PyTorch engines), for nsys."""
    hooks = instrument_detr(engine.model) if variant.engine.kind in TORCH_ENGINES else None
    try:
        with ranges_enabled(nvtx=True):
            run_end_to_end(engine.infer, sample, iterations)
    finally:
        if hooks is not None:
            hooks.remove()


def _pyinstrument(engine, sample: Sample, iterations: int, path: Path) -> None:
    """A pyinstrument call tree of `iterations` end-to-end iterations, as HTML."""
    try:
        from pyinstrument import Profiler
    except ImportError as error:
        raise MissingExtraError("pyinstrument", "profile", "profile.pyinstrument") from error
    run_end_to_end(engine.infer, sample, iterations=0)  # warm-up outside the profile
    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        run_end_to_end(engine.infer, sample, iterations, warmup=0)
    finally:
        profiler.stop()
    path.parent.mkdir(parents=True, exist_ok=True)
    profiler.write_html(path)


def profile_variant(engine, model, variant, profile: ProfileSpec, data, out_dir: Path,
                    p50_ms: float) -> tuple[dict | None, dict[str, str]]:
    """Run the profilers `profile` asks for on a built engine, after its timing.

    `p50_ms` is the timed median latency at batch 1 (sets the number of profiled iterations); `out_dir` is the
    experiment's report folder. Returns the stage breakdown (see `profiling.stages`; None when not asked for
    or the engine cannot attribute time) and the profile files written, relative to `out_dir`. A profiler
    that fails costs only its own output: the failure is printed and noted in the breakdown. `model` (the
    variant's float model) is not profiled: the engine holds what actually runs (quantized, compiled)."""
    sample = sample_of(data)
    iterations = iterations_for(p50_ms)
    files: dict[str, str] = {}
    failures: list[str] = []
    stages = None
    kind = variant.engine.kind
    # On CUDA only the PyTorch engines have a breakdown (their stage ranges wait for the GPU at their edges), and
    # not when replaying CUDA graphs, which runs no Python and so opens no range.
    has_breakdown = (kind in TORCH_ENGINES and not variant.engine.cuda_graphs) or (
        kind in STAGE_ENGINES and variant.engine.device == "cpu")
    want_breakdown = profile.stages or (profile.torch_profiler and kind in TORCH_ENGINES)
    if want_breakdown and has_breakdown:
        try:
            stages = _stage_breakdown(engine, variant, sample, iterations, profile, out_dir, files)
            if stages is not None:
                stages["timed_p50_ms"] = round(p50_ms, 4)
        except Exception as error:  # noqa: BLE001 -- a profiler bug must not lose the variant's measured results
            failures.append(f"stage profile failed: {type(error).__name__}: {error}")
    elif profile.stages:
        tqdm.write(f"{variant.name}: no stage breakdown for engine '{kind}' on {variant.engine.device} (PyTorch "
                   "engines without CUDA graphs, ONNX Runtime and OpenVINO on CPU; profile the others with nsys and nvtx: true)")
    if profile.nvtx and stages is None:
        try:
            _nvtx_only(engine, variant, sample, iterations)
            tqdm.write(f"{variant.name}: {NVTX_NOTE}")
        except Exception as error:  # noqa: BLE001 -- as above
            failures.append(f"NVTX ranges failed: {type(error).__name__}: {error}")
    if profile.pyinstrument:
        path, relative = _traces(out_dir, variant.name, "pyinstrument.html")
        try:
            _pyinstrument(engine, sample, iterations, path)
            files["pyinstrument"] = relative
        except Exception as error:  # noqa: BLE001 -- as above
            failures.append(f"pyinstrument failed: {type(error).__name__}: {error}")
    for failure in failures:
        tqdm.write(f"{variant.name}: {failure}")
    if stages is not None:
        stages["notes"] += ([NVTX_NOTE] if profile.nvtx else []) + failures
        if not profile.stages:
            stages = None  # run for the torch trace only
    return stages, files

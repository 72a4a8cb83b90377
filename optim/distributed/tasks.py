"""What a Ray worker process runs: it loads the experiment's model and data itself, once per process (cached), then
scores a variant (build, export, calibration, distillation, accuracy) or times one that an earlier task built on
the same node. Records come back to the driver, which saves them."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

import torch

from optim.environment import this_machine
from optim.errors import OptimError
from optim.eval_data import ExperimentData, detections_from_json
from optim.fingerprint import weights_sha256
from optim.spec import ExperimentSpec, VariantSpec


@dataclass(frozen=True)
class RunContext:
    """What every task of a sweep shares (put in Ray's object store once): the resolved spec, the driver's working
    folder (relative paths in the spec are relative to it), the weights' hash the driver saw, the output folder and
    the driver's PyTorch intra-op threads (what a sequential run scores and times PyTorch on)."""

    spec: dict
    cwd: str
    weights_sha256: str
    out_dir: str
    torch_threads: int


@dataclass
class WorkerRun:
    """A worker process's copy of the experiment: the spec, the loaded model, the data, its compression cache."""

    spec: ExperimentSpec
    model: torch.nn.Module
    data: ExperimentData
    compressed: dict = field(default_factory=dict)
    speed_calibrated: bool = False

    def variant(self, name: str) -> VariantSpec:
        return next(v for v in self.spec.all_variants() if v.name == name)


_RUNS: dict[str, WorkerRun] = {}  # one experiment per worker process at a time


def worker_run(context: RunContext) -> WorkerRun:
    """This process's copy of the experiment, loaded on first use; the model's weights must hash to what the
    driver loaded (else this node has other model files, and its figures would not be comparable)."""
    key = hashlib.sha256(json.dumps([context.spec, context.cwd], sort_keys=True).encode()).hexdigest()
    if key not in _RUNS:
        from optim.cli import quiet_libraries
        from optim.runner import load_experiment

        if Path(context.cwd).is_dir():
            os.chdir(context.cwd)  # the spec's relative paths (data root, model folder) are the driver's
        quiet_libraries()
        spec = ExperimentSpec.model_validate(context.spec)
        loaded, data, _ = load_experiment(spec)
        if weights_sha256(loaded.model) != context.weights_sha256:
            raise OptimError(f"the Ray worker on {this_machine()['hostname']} loaded other weights for model "
                             f"'{spec.model}' than the driver", fix="install the same lab version and model files on "
                             "every node of the cluster")
        _RUNS.clear()
        _RUNS[key] = WorkerRun(spec, loaded.model, data)
    return _RUNS[key]


def _threads(count: int) -> None:
    """Intra-op threads for PyTorch here and for any process this task starts (OpenMP reads the variable)."""
    torch.set_num_threads(count)
    os.environ["OMP_NUM_THREADS"] = str(count)


def warm(context: RunContext) -> str:
    """Load the experiment into this worker process ahead of its first variant; returns the hostname."""
    worker_run(context)
    return this_machine()["hostname"]


def engine_threads(ray) -> int:
    """ONNX Runtime / OpenVINO threads of one scoring task: this node's cores shared among its Ray CPUs (1 when Ray
    has them all)."""
    node_id = ray.get_runtime_context().get_node_id()
    cpus = next((n["Resources"].get("CPU", 1) for n in ray.nodes() if n["NodeID"] == node_id), 1)
    return max(1, int((os.cpu_count() or 1) // max(cpus, 1)))


def score(context: RunContext, name: str, baseline_detections: list | None) -> dict:
    """The variant's record without latency: built, scored and sized (a failure is a failed record);
    `measured_on.accuracy` names this machine and its Ray node (where the artifact lies).

    ONNX Runtime and OpenVINO score on `engine_threads`; PyTorch on the driver's thread count, as a sequential run
    does: its x86 INT8 kernels compute other results with another thread count (synth-detr's dynamic INT8 logits
    differ by up to 0.15 between 1 and 2 threads, mAP 0.567 vs 0.562), and the mAP must not depend on the workers."""
    import ray

    from optim.runner import guarded
    from optim.variant import build_variant, score_variant, time_variant

    run = worker_run(context)
    variant = run.variant(name)
    threads = engine_threads(ray)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the engines' pools, also in processes this task starts
    torch.set_num_threads(context.torch_threads)
    spec = run.spec.model_copy(update={"latency": run.spec.latency.model_copy(update={"threads": threads})})
    baseline = detections_from_json(baseline_detections) if baseline_detections else None
    workdir = Path(context.out_dir) / "artifacts" / name

    def work() -> dict:
        built = build_variant(variant, spec, run.data, run.model, workdir, run.compressed)
        try:
            outcome = score_variant(built, variant, spec, run.data, baseline)
            untimed, _ = time_variant(built, variant, run.spec, run.data, workdir) if not spec.latency.enabled \
                else ({}, [])
        finally:
            built.engine.close()
        machine = {**this_machine(variant.engine.device), "node_id": ray.get_runtime_context().get_node_id()}
        return {**outcome.record, **untimed, "measured_on": {"accuracy": machine, "latency": None}}

    return guarded(variant, spec, work)


def measure_latency(context: RunContext, name: str) -> dict:
    """Latency (and profile, scenarios) of a variant that `score` built on this node, on the spec's threads:
    {"figures": record fields, "notes": [...], "machine": {...}}; raises on failure (the driver records it)."""
    from optim.machine_load import MACHINE_SPEED
    from optim.variant import load_built_variant, time_variant

    run = worker_run(context)
    variant = run.variant(name)
    # Ray starts workers with one OpenMP thread; time on what the sequential runner times on.
    _threads(context.torch_threads)
    if not run.speed_calibrated:
        MACHINE_SPEED.calibrate(seconds=1.0)  # as the sequential runner does once before timing anything
        run.speed_calibrated = True
    workdir = Path(context.out_dir) / "artifacts" / name
    start = perf_counter()
    built = load_built_variant(variant, run.spec, run.data, run.model, workdir, run.compressed)
    try:
        figures, notes = time_variant(built, variant, run.spec, run.data, workdir)
    finally:
        built.engine.close()
    return {"figures": figures, "notes": built.notes + notes, "machine": this_machine(variant.engine.device),
            "seconds": perf_counter() - start}

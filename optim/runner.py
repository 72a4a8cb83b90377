"""Run an experiment: every variant in turn (baseline first), each result saved as soon as it exists; a
failing variant is recorded with its reason and the run goes on; a re-run skips finished variants."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from optim.environment import environment, this_machine
from optim.eval_data import ExperimentData, detections_from_json, torch_threads
from optim.evaluation.bootstrap import PerImageEval, per_image_eval
from optim.finetune.common import seed_everything
from optim.fingerprint import baseline_reference, run_fingerprint, variant_fingerprint
from optim.intervals import INTERVAL_TEXT, attach_intervals
from optim.latency import METHOD_TEXT
from optim.machine_load import MACHINE_SPEED
from optim.models.blocks import check_keep_float
from optim.models.zoo import load_model
from optim.results import ResultStore, disk_full_is_an_error, safe_child, write_json_atomic
from optim.spec import ExperimentSpec, VariantSpec
from optim.timing.peak import PEAK_TEXT, measure_peaks, share_of_peak
from optim.timing.variant_latency import TIMING_TEXT
from optim.variant import run_variant

if TYPE_CHECKING:
    from optim.distributed.cluster import RayOptions

ACCURACY_TEXT = ("Accuracy: COCO box mAP@[.5:.95], mAP@.5, mAP@.75 and AP small/medium/large from pycocotools on "
                 "the first {images} images of split '{split}'; every engine returns DETR's raw outputs, which one "
                 "shared post-processing (softmax, best real class per query, no NMS) turns into detections. "
                 "Calibration/tuning uses split '{calibration}' only. Fidelity = share of the baseline's detections "
                 "with score > 0.5 that the variant reproduces (same class, IoU >= 0.5, score > 0.5).")


RAY_TEXT = ("Measured by Ray tasks on nodes with this machine's CPU model: each variant built and scored by one task "
            "(PyTorch intra-op threads = the node's cores / its Ray CPUs), then timed on the node that built it by a "
            "task that holds the node's one timing resource and the CPUs it times on; each variant names the machine "
            "of its accuracy and of its latency.")
NO_LATENCY_TEXT = "Not measured: an accuracy-only run (latency.enabled: false)."


def ordered_variants(spec: ExperimentSpec) -> list[VariantSpec]:
    """The baseline first (every other variant's fidelity is measured against it), then spec order."""
    variants = spec.all_variants()
    return sorted(variants, key=lambda v: v.name != spec.baseline_name)


def run_experiment(spec: ExperimentSpec, out_dir: Path | None = None, resume: bool = True,
                   only: list[str] | None = None, ray: RayOptions | None = None) -> dict:
    """Measure every variant of `spec` and write results.json, results.csv and index.html to `out_dir` (one run
    per folder at a time; a full disk ends in a clear error with every finished variant kept). With `ray`, the
    variants are measured by Ray tasks (optim.distributed) and saved here as each one finishes."""
    out_dir = out_dir or safe_child(spec.output_dir, spec.name)
    store = ResultStore(out_dir)
    with disk_full_is_an_error(out_dir), store.locked():
        return _run_locked(spec, out_dir, store, resume, only, ray)


def load_experiment(spec: ExperimentSpec) -> tuple[object, ExperimentData, tuple[int, int]]:
    """(the zoo's LoadedModel, the preprocessed data, the input size): what every variant is measured on; the
    runner and each Ray worker build it the same way (same seed, so architecture-only models get the same weights)."""
    seed_everything(spec.seed)  # architecture-only entries get the same random weights in every run
    loaded = load_model(spec.model, trust_remote_code=spec.trust_remote_code,
                        allow_missing_weights=spec.allow_missing_weights)
    input_size = tuple(spec.input_size or loaded.default_input_size)
    data = ExperimentData(spec.data, input_size, spec.eval_batch_size)
    classes = len(data.eval_set.category_ids)
    if not loaded.trained and loaded.model.config.num_labels != classes:
        seed_everything(spec.seed)  # random weights anyway: size the head to the data set, so detections score
        loaded = load_model(spec.model, num_labels=classes, trust_remote_code=spec.trust_remote_code)
    check_keep_float(spec.all_variants(), loaded.model)  # a unit the model lacks: exit 2 before measuring
    data.use_labels_of(loaded.model, f"model '{spec.model}'")
    data.preload()  # a broken evaluation image stops the run here (exit 2), not inside every variant
    return loaded, data, input_size


def _run_locked(spec: ExperimentSpec, out_dir: Path, store: ResultStore, resume: bool, only: list[str] | None,
                ray: RayOptions | None) -> dict:
    torch_threads(spec.latency.threads)
    peaks: dict[str, float] = {}
    if spec.latency.enabled:
        MACHINE_SPEED.calibrate(seconds=1.0)  # see the machine's fast state before timing anything
        peaks = measure_peaks(spec.latency.threads)
    loaded, data, input_size = load_experiment(spec)
    shared = run_fingerprint(spec, loaded, data, input_size)
    baseline_detections = baseline = None
    records: list[dict] = []
    compressed: dict = {}  # models after shared prune/distill prefixes, reused across variants

    def lookup(variant: VariantSpec) -> tuple[dict, dict | None, list[str]]:
        """(its fingerprint, its stored record when it can be kept, why a stored record is stale)."""
        fingerprint = variant_fingerprint(shared, spec, variant, baseline)
        record, stale = store.finished(variant.name, fingerprint) if resume else (None, [])
        if record is not None:
            tqdm.write(f"{variant.name}: already measured, kept (delete {store.path_of(variant.name)} to redo)")
        elif stale:
            tqdm.write(f"{variant.name}: measuring again, the stored record is stale: {'; '.join(stale[:6])}")
        return fingerprint, record, stale

    def keep(variant: VariantSpec, record: dict, fingerprint: dict | None = None, stale: list[str] = ()) -> dict:
        """Add `record` to the run's records; a new measurement (given with its fingerprint) is saved first."""
        nonlocal baseline_detections, baseline
        if fingerprint is not None:
            record.update(fingerprint=fingerprint, remeasured_because=list(stale) or None)
            if stale:  # the report's notes say why
                record["notes"] = [*record.get("notes", []), "measured again: " + "; ".join(stale)]
            store.save(record)
            _print_summary(record)
        if variant.name == spec.baseline_name:
            baseline = baseline_reference(record)
            if record["status"] == "ok":
                baseline_detections = detections_from_json(record["detections"])
        records.append(record)
        return record

    def measure_one(variant: VariantSpec) -> dict:
        """Measure `variant` (or keep its stored record when resuming) and add it to the run's records."""
        fingerprint, record, stale = lookup(variant)
        if record is not None:
            return keep(variant, record)

        def work() -> dict:
            outcome = run_variant(variant, spec, data, loaded.model, baseline_detections,
                                  safe_child(out_dir / "artifacts", variant.name), compressed)
            here = this_machine(variant.engine.device)
            return {**outcome.record, "measured_on": {"accuracy": here, "latency": here if spec.latency.enabled
                                                      else None}}

        return keep(variant, guarded(variant, spec, work), fingerprint, stale)

    variants = [v for v in ordered_variants(spec) if not only or v.name in only or v.name == spec.baseline_name]
    distributed = None
    if ray is None:
        for variant in tqdm(variants, desc=f"{spec.name}: variants", unit="variant"):
            measure_one(variant)
    else:
        from optim.distributed.sweep import run_on_ray

        distributed = run_on_ray(ray, spec, variants, out_dir, shared["model"]["weights_sha256"], lookup, keep)
        records.sort(key=lambda record: [v.name for v in variants].index(record["name"]))
    search = None
    if spec.search is not None:
        from optim.search import run_search

        search = run_search(spec, records, measure_one, lambda record: _per_image(record, data))
    tqdm.write("confidence intervals: bootstrap over images")
    intervals = attach_intervals(records, spec.baseline_name, lambda record: _per_image(record, data), spec.seed)
    results = _assemble(spec, loaded, input_size, data, records, peaks, intervals)
    if search is not None:
        results["search"] = search
    if distributed is not None:
        results["distributed"] = distributed
        results["measurement"]["machines"] = RAY_TEXT
    write_json_atomic(out_dir / "results.json", results)
    if spec.serving:  # reads the results.json just written: serving deploys what was measured
        from optim.serving.in_run import measure_serving

        results["serving"] = measure_serving(spec.serving, out_dir)
        write_json_atomic(out_dir / "results.json", results)
    from optim.report.html import write_report
    from optim.report.tables import write_tables

    write_tables(results, out_dir)
    report = write_report(results, out_dir)
    tqdm.write(f"report: {report}")
    return results


def _identity(variant: VariantSpec, spec: ExperimentSpec) -> dict:
    """The fields every record starts with: which variant, as specified, with which seed."""
    return {"name": variant.name, "spec": variant.model_dump(mode="json"), "seed": spec.seed,
            "engine": variant.engine.kind, "precision": variant.precision}


def failed_record(variant: VariantSpec, spec: ExperimentSpec, reason: str) -> dict:
    """The record of a variant that failed, with the reason (no figures)."""
    return {**_identity(variant, spec), "status": "failed", "error": reason}


def guarded(variant: VariantSpec, spec: ExperimentSpec, work: Callable[[], dict]) -> dict:
    """`variant`'s record from `work()` (its measured fields); any exception becomes a failed record with its
    reason, so a failing variant never loses the others' results."""
    start = time.perf_counter()
    try:
        record = {**_identity(variant, spec), "status": "ok", "error": None, **work()}
    except Exception as error:  # noqa: BLE001 -- a failing variant must never lose the others' results
        reason = f"{type(error).__name__}: {error}"
        tqdm.write(f"{variant.name}: FAILED — {reason}")
        record = {**failed_record(variant, spec, reason), "traceback": traceback.format_exc(limit=8)[-4000:]}
    record["wall_seconds"] = round(time.perf_counter() - start, 1)
    record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return record


def _per_image(record: dict, data: ExperimentData) -> PerImageEval | None:
    """A variant's per-image COCO evaluation from its stored detections (None when none were kept)."""
    if not record.get("detections"):
        return None
    return per_image_eval(data.eval_set.coco, detections_from_json(record["detections"]), data.label_map)


def _print_summary(record: dict) -> None:
    if record["status"] != "ok":
        return
    first = next(iter((record.get("latency") or {}).values()), None)
    timed = f"  p50 {first['p50_ms']:.2f} ms" if first else ""
    tqdm.write(f"{record['name']}: mAP {record['accuracy']['map']:.4f}{timed}  ({record['wall_seconds']} s)")


def _assemble(spec: ExperimentSpec, loaded, input_size, data: ExperimentData, records: list[dict],
              peaks: dict[str, float], intervals: dict) -> dict:
    """results.json: spec, environment, how things were measured, the machine's matrix-product peaks, and every
    variant (detections left out) with its batch-1 share of the peak of its precision."""
    variants = [{k: v for k, v in r.items() if k != "detections"} for r in records]
    for variant in variants:
        first = next(iter(variant.get("latency") or {}), None)
        if variant["status"] == "ok" and first is not None:
            variant["peak_share"] = share_of_peak(variant["flops"], int(first), variant["latency"][first]["p50_ms"],
                                                  variant["precision"], peaks)
    return {
        "experiment": spec.name, "description": spec.description, "baseline": spec.baseline_name,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "spec": spec.model_dump(mode="json"), "environment": environment(),
        "model": {"name": spec.model, "source": loaded.source, "trained": loaded.trained, "input_size": list(input_size),
                  "classes": int(loaded.model.config.num_labels)},
        "measurement": {"latency": NO_LATENCY_TEXT if not spec.latency.enabled else METHOD_TEXT.format(warmup=spec.latency.warmup_iters, max_seconds=spec.latency.max_seconds,
                                                      steady_wait=spec.latency.steady_wait,
                                                      max_iters=spec.latency.max_iters, min_iters=spec.latency.min_iters)
                        + " " + TIMING_TEXT.format(seconds=spec.latency.reference_seconds,
                                                   rounds=spec.latency.reference_rounds) + " " + PEAK_TEXT,
                        "accuracy": ACCURACY_TEXT.format(images=len(data.eval_set), split=spec.data.eval_split,
                                                         calibration=spec.data.calibration_split),
                        "intervals": INTERVAL_TEXT.format(**intervals)},
        "intervals": intervals,
        "machine_peaks": peaks,
        "variants": variants,
    }

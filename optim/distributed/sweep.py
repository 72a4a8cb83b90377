"""The driver's side of a Ray sweep: the baseline first, then every other variant as Ray tasks; each record is
saved by the driver, through the runner's store, as soon as its variant finishes.

Per variant: a scoring task (1 CPU, anywhere on a node of the driver's CPU model; a GPU for CUDA variants) builds,
calibrates, distils and scores it; then, for a timed run, a timing task on the same node (where the artifact lies)
holds the node's timing resource and the CPUs it times on, so timings on a node never overlap each other."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from optim.distributed import tasks
from optim.distributed.cluster import TIMING_RESOURCE, Node, RayOptions, connected, usable_nodes
from optim.runner import failed_record
from optim.spec import ExperimentSpec, VariantSpec

Lookup = Callable[[VariantSpec], tuple[dict, dict | None, list[str]]]
Keep = Callable[..., dict]


def run_on_ray(options: RayOptions, spec: ExperimentSpec, variants: list[VariantSpec], out_dir: Path,
               weights_sha256: str, lookup: Lookup, keep: Keep) -> dict:
    """Measure `variants` (the baseline first) on Ray; `lookup` and `keep` are the runner's: a stored record is kept,
    a new one saved. Returns what the report says about the cluster."""
    with connected(options) as ray:
        nodes = {node.node_id: node for node in usable_nodes(ray, spec.latency.enabled)}
        has_gpu = any(node.gpus for node in nodes.values())
        context = ray.put(tasks.RunContext(spec.model_dump(mode="json"), os.getcwd(), weights_sha256,
                                           str(Path(out_dir).resolve()), torch.get_num_threads()))
        cpus = sum(node.cpus for node in nodes.values())
        warm = ray.remote(tasks.warm).options(num_cpus=1, max_retries=0)
        warming = [warm.remote(context) for _ in range(max(0, cpus - 1))]  # load model and data while the baseline runs
        sweep = _Sweep(ray, spec, context, nodes, has_gpu, lookup, keep)
        first, rest = variants[0], variants[1:]
        with tqdm(total=len(variants), desc=f"{spec.name}: variants (Ray)", unit="variant") as bar:
            baseline = sweep.run([first], None, bar)[0]  # the others' fidelity is measured against its detections
            detections = ray.put(baseline["detections"] if baseline["status"] == "ok" else None)
            sweep.run(rest, detections, bar)
        ray.wait(warming, num_returns=len(warming))
        hosts = sorted({node.hostname for node in nodes.values()})
        return {"address": options.address or "local", "nodes": len(nodes), "hosts": hosts, "cpus": cpus}


class _Sweep:
    """Submits scoring then timing tasks and hands each finished record to `keep`."""

    def __init__(self, ray, spec: ExperimentSpec, context, nodes: dict[str, Node], has_gpu: bool, lookup: Lookup,
                 keep: Keep):
        self.ray, self.spec, self.context, self.nodes, self.has_gpu = ray, spec, context, nodes, has_gpu
        self.lookup, self.keep = lookup, keep
        self.score_task = ray.remote(tasks.score)
        self.time_task = ray.remote(tasks.measure_latency)

    def run(self, variants: list[VariantSpec], baseline_detections, bar) -> list[dict]:
        """Measure `variants` in parallel (or keep their stored records); their records in finishing order."""
        pending: dict = {}  # ObjectRef -> (variant, fingerprint, stale, record so far)
        done = []
        for variant in variants:
            fingerprint, record, stale = self.lookup(variant)
            if record is not None:
                done.append(self.keep(variant, record))
                bar.update()
                continue
            ref = self.score_task.options(**self._placement(variant), max_retries=0).remote(
                self.context, variant.name, baseline_detections)
            pending[ref] = (variant, fingerprint, stale, None)
        while pending:
            [ref], _ = self.ray.wait(list(pending), num_returns=1)
            variant, fingerprint, stale, record = pending.pop(ref)
            if record is None:  # scored (or failed)
                record = self._result(ref, variant)
                if record["status"] == "ok" and self.spec.latency.enabled:
                    pending[self._submit_timing(variant, record)] = (variant, fingerprint, stale, record)
                    continue
            else:
                self._merge_timing(ref, record)
            done.append(self.keep(variant, record, fingerprint, stale))
            bar.update()
        return done

    def _placement(self, variant: VariantSpec) -> dict:
        """A node of the driver's CPU model; one GPU for a CUDA variant when the cluster has one (without, the task
        runs anyway and the engine's own check records why the variant cannot run)."""
        from optim.distributed.cluster import CPU_LABEL, cpu_label

        gpus = 1 if variant.engine.device == "cuda" and self.has_gpu else 0
        return {"num_cpus": 1, "num_gpus": gpus, "label_selector": {CPU_LABEL: cpu_label()}}

    def _result(self, ref, variant: VariantSpec) -> dict:
        """The scoring task's record; a task that crashed (worker died, out of memory) becomes a failed record."""
        try:
            record = self.ray.get(ref)
        except Exception as error:  # noqa: BLE001 -- one crashed variant must not stop the sweep
            record = {**failed_record(variant, self.spec, f"Ray task: {_reason(error)}"), "wall_seconds": None,
                      "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if record["status"] != "ok":
            tqdm.write(f"{variant.name}: FAILED — {record['error']}")
        return record

    def _submit_timing(self, variant: VariantSpec, record: dict):
        """A timing task on the node that built the variant, holding that node's timing resource and the CPUs the
        spec times on (all of the node's by default, so no scoring task runs beside a timing)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node = self.nodes[record["measured_on"]["accuracy"]["node_id"]]
        cpus = min(node.cpus, self.spec.latency.threads or node.cpus)
        gpus = 1 if variant.engine.device == "cuda" and self.has_gpu else 0
        return self.time_task.options(
            num_cpus=cpus, num_gpus=gpus, resources={TIMING_RESOURCE: 1}, max_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False),
        ).remote(self.context, variant.name)

    def _merge_timing(self, ref, record: dict) -> None:
        """Add the timing task's figures to `record`, or mark it failed with the reason."""
        try:
            timed = self.ray.get(ref)
        except Exception as error:  # noqa: BLE001 -- a failed timing fails its variant, not the sweep
            record.update(status="failed", error=f"timing: {_reason(error)}")
            tqdm.write(f"{record['name']}: FAILED while timing — {_reason(error)}")
            return
        record.update(timed["figures"])
        record["wall_seconds"] = round((record.get("wall_seconds") or 0) + timed["seconds"], 1)
        record["notes"] = [*record.get("notes", []), *timed["notes"]]
        record["measured_on"]["latency"] = timed["machine"]


def _reason(error: Exception) -> str:
    """The task's own exception when Ray wrapped one (RayTaskError.cause), else Ray's."""
    cause = getattr(error, "cause", None) or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"

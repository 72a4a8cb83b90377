"""Search a space of variants for the fastest one within an mAP budget, measuring as few candidates as it can.

The space (engines x precisions x keep-float sets x prune ratios x distillation) is ordered by aggressiveness:
within one engine and distillation setting, a candidate that quantizes a superset of another's blocks and prunes
at least as much is predicted faster and less accurate. The search measures the most aggressive candidates
first; a candidate that exceeds the budget rules out everything more aggressive, a candidate within the budget
rules out everything less aggressive (slower), and a candidate slower than the best one found rules out everything
less aggressive of its engine. Among equally aggressive candidates the block sensitivity table decides: blocks
whose quantization cost the most mAP stay in float first. The budget is checked on the paired-bootstrap upper
bound of the mAP loss (the same image resamples for candidate and baseline), so a pass is one we can trust.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from tqdm import tqdm

from optim.errors import OptimError
from optim.evaluation.bootstrap import RESAMPLES, PerImageEval, bootstrap_maps, interval, resample_weights
from optim.report.sensitivity import BLOCKS, sensitivity_rows
from optim.report.summary import latency_by_batch, measured
from optim.spec import (
    DEFAULT_METHOD,
    METHODS_BY_ENGINE,
    DistillStep,
    EngineSpec,
    ExperimentSpec,
    PruneStep,
    QuantizeStep,
    SearchSpec,
    VariantSpec,
)


@dataclass(frozen=True)
class Candidate:
    """One point of the space and the variant that measures it."""

    engine: str
    precision: str
    keep_float: tuple[str, ...]
    prune: float
    distill: bool
    variant: VariantSpec = field(compare=False, hash=False)

    @property
    def quantized(self) -> frozenset[str]:
        return frozenset() if self.precision == "fp32" else frozenset(BLOCKS) - set(self.keep_float)

    def at_least_as_aggressive(self, other: Candidate) -> bool:
        """Same engine and distillation, quantizes a superset of `other`'s blocks, prunes at least as much."""
        return (self.engine == other.engine and self.distill == other.distill and self.quantized >= other.quantized
                and self.prune >= other.prune and (self.precision == other.precision or other.precision == "fp32"))


def _name(engine: str, precision: str, keep: tuple[str, ...], prune: float, distill: bool) -> str:
    parts = [engine, precision] + ([f"kf-{'.'.join(keep)}"] if keep else []) + \
        ([f"prune{round(prune * 100)}"] if prune else []) + (["distill"] if distill else [])
    return "search-" + "-".join(parts)


def grid(search: SearchSpec) -> list[Candidate]:
    """Every runnable candidate of the space (combinations an engine cannot run are left out)."""
    space, out, seen = search.space, [], set()
    for engine, precision, keep, prune, distill in itertools.product(
            space.engines, space.precisions, space.keep_float, space.prune_ratios, space.distill):
        keep = () if precision == "fp32" else tuple(b for b in BLOCKS if b in keep)
        if distill and not prune:
            continue  # distillation recovers what pruning lost: without pruning there is nothing to recover
        steps: list = []
        if prune:
            steps.append(PruneStep(kind="prune", method="channels", ratio=prune))
        if distill:
            steps.append(DistillStep(kind="distill", steps=search.distill_steps))
        if precision != "fp32":
            method = DEFAULT_METHOD.get((engine, precision), precision)
            if method not in METHODS_BY_ENGINE[engine] or (method == "fp16" and engine != "openvino") \
                    or len(keep) == len(BLOCKS):
                continue
            steps.append(QuantizeStep(kind="quantize", method=method, keep_float=list(keep)))
        key = (engine, precision, keep, prune, distill)
        if key in seen:
            continue
        seen.add(key)
        out.append(Candidate(engine, precision, keep, prune, distill,
                             VariantSpec(name=_name(*key), steps=steps, engine=EngineSpec(kind=engine))))
    return out


def objective_value(record: dict, objective: str, batch_sizes: list[int]) -> float | None:
    """What the search minimizes: p50 (ms) at the smallest batch, -throughput at the largest, or bytes."""
    if objective == "size":
        return measured(record.get("model_size_bytes"))
    latency = latency_by_batch(record)
    if objective == "latency":
        return measured(latency.get(min(batch_sizes), {}).get("p50_ms"))
    value = measured(latency.get(max(batch_sizes), {}).get("throughput_ips"))
    return None if value is None else -value


def block_costs(records: list[dict], baseline: str, extra: dict | None) -> dict[tuple[str, str], dict[str, float]]:
    """mAP cost in points of quantizing each block alone, per (engine, method), from one-block variants of this
    run (`records`, compared with `baseline`) or of a sensitivity run's results (`extra`)."""
    costs: dict[tuple[str, str], dict[str, float]] = {}
    for results in [{"baseline": baseline, "variants": records}] + ([extra] if extra else []):
        for row in sensitivity_rows(results):
            engine, method = row["engine"], row["key"].split(" · ")[-1]
            for block, cell in row["cells"].items():
                if block in BLOCKS and cell["delta"] is not None:
                    costs.setdefault((engine, method), {})[block] = -cell["delta"]
    return costs


def _priority(candidate: Candidate, costs: dict[tuple[str, str], dict[str, float]], budget: float,
              engine_best: dict[str, float]) -> tuple:
    """The order candidates are tried in (an order only: nothing is skipped on a prediction). First those the
    sensitivity table predicts within the budget (its block costs added up), then those it has no row for (and
    float ones), then those it predicts over; within each, the most aggressive first; then engines whose fastest variant measured so
    far is fastest; then the candidate whose quantized blocks cost least."""
    method = candidate.variant.steps[-1].method if candidate.precision != "fp32" else ""
    table = costs.get((candidate.engine, method))
    cost = sum(table.get(block, 0.0) for block in candidate.quantized) if table else 0.0
    predicted = 1 if table is None or not candidate.quantized else 2 if cost > budget else 0
    return (predicted, -len(candidate.quantized), -candidate.prune, candidate.distill,
            engine_best.get(candidate.engine, float("inf")), cost, candidate.variant.name)


class PairedLoss:
    """Upper bound of the paired-bootstrap interval of a variant's mAP loss to the baseline, in points."""

    def __init__(self, baseline: PerImageEval, seed: int, resamples: int = RESAMPLES):
        self.weights = resample_weights(len(baseline.image_ids), resamples, seed)
        self.baseline = bootstrap_maps(baseline, self.weights)
        self.image_ids = baseline.image_ids

    def upper(self, evaluation: PerImageEval) -> float:
        if evaluation.image_ids != self.image_ids:
            raise ValueError("candidate and baseline were scored on different images")
        low, _ = interval(bootstrap_maps(evaluation, self.weights) - self.baseline)
        return float(-low * 100)


def _matching_record(candidate: Candidate, records: list[dict]) -> dict | None:
    """A variant of the spec already measured with exactly this candidate's steps and engine."""
    wanted = (candidate.variant.model_dump(mode="json")["steps"], candidate.variant.engine.model_dump(mode="json"))
    for record in records:
        spec = record.get("spec") or {}
        if record.get("status") == "ok" and (spec.get("steps"), spec.get("engine")) == wanted:
            return record
    return None


def run_search(spec: ExperimentSpec, records: list[dict], measure: Callable[[VariantSpec], dict],
               evaluate: Callable[[dict], PerImageEval | None]) -> dict:
    """Search `spec.search` after the spec's variants (`records`); returns the search's record for results.json."""
    search = spec.search
    baseline = next((r for r in records if r["name"] == spec.baseline_name and r["status"] == "ok"), None)
    if baseline is None:
        return {"error": "the baseline failed: no budget can be checked"}
    paired = PairedLoss(evaluate(baseline), spec.seed)
    extra = _load_sensitivity(search)
    candidates = grid(search)
    costs = block_costs(records, spec.baseline_name, extra)
    engine_best: dict[str, float] = {}
    for record in records:
        value = objective_value(record, search.objective, spec.batch_sizes) if record["status"] == "ok" else None
        if value is not None:
            engine_best[record["engine"]] = min(value, engine_best.get(record["engine"], value))
    pending = sorted(candidates, key=lambda c: _priority(c, costs, search.budget_points, engine_best))
    tried: list[dict] = []
    done: list[tuple[Candidate, dict]] = []
    skipped: dict[str, str] = {}
    best: tuple[float, Candidate] | None = None
    with tqdm(total=len(candidates), desc=f"{spec.name}: search", unit="candidate") as bar:
        while pending and (search.max_candidates is None or len(tried) < search.max_candidates):
            candidate = pending.pop(0)
            existing = _matching_record(candidate, records)
            record = existing or measure(candidate.variant)
            entry = _judge(candidate, record, paired, evaluate, search, spec.batch_sizes)
            entry["reused"] = existing is not None
            tried.append(entry)
            done.append((candidate, entry))
            value = entry["objective"]
            if entry["feasible"] and value is not None and (best is None or value < best[0]):
                best = (value, candidate)
            pending = _prune(pending, done, best, skipped)
            bar.n = len(candidates) - len(pending)  # measured or ruled out
            bar.refresh()
    skipped.update({c.variant.name: "not reached (max_candidates)" for c in pending})
    return _summary(search, candidates, tried, skipped, best, spec)


def _judge(candidate: Candidate, record: dict, paired: PairedLoss, evaluate, search: SearchSpec,
           batch_sizes: list[int]) -> dict:
    entry = {"name": record["name"], "candidate": candidate.variant.name, "engine": candidate.engine,
             "precision": candidate.precision, "keep_float": list(candidate.keep_float), "prune": candidate.prune,
             "distill": candidate.distill, "status": record["status"], "loss_upper_points": None,
             "objective": None, "feasible": False}
    if record["status"] != "ok":
        entry["reason"] = record.get("error")
        return entry
    evaluation = evaluate(record)
    entry["loss_upper_points"] = round(paired.upper(evaluation), 3) if evaluation is not None else None
    entry["objective"] = objective_value(record, search.objective, batch_sizes)
    entry["feasible"] = entry["loss_upper_points"] is not None and entry["loss_upper_points"] <= search.budget_points
    return entry


def _prune(pending: list[Candidate], done: list[tuple[Candidate, dict]], best: tuple[float, Candidate] | None,
           skipped: dict[str, str]) -> list[Candidate]:
    """Drop the candidates the measurements so far rule out, recording why."""
    keep = []
    for other in pending:
        reason = None
        for measured_one, entry in done:
            if entry["status"] != "ok":
                continue
            if not entry["feasible"] and other.at_least_as_aggressive(measured_one):
                reason = f"at least as aggressive as {entry['name']}, which exceeded the budget"
            elif entry["feasible"] and measured_one.at_least_as_aggressive(other):
                reason = f"less aggressive than {entry['name']}, which is within the budget: predicted slower"
            elif (best is not None and entry["objective"] is not None and entry["objective"] > best[0]
                  and measured_one.at_least_as_aggressive(other)):
                reason = f"less aggressive than {entry['name']}, itself worse than {best[1].variant.name}"
            if reason:
                break
        if reason:
            skipped[other.variant.name] = reason
        else:
            keep.append(other)
    return keep


def _load_sensitivity(search: SearchSpec) -> dict | None:
    if search.sensitivity is None:
        return None
    try:
        return json.loads(search.sensitivity.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise OptimError(f"cannot read the sensitivity results: {error}", field="search.sensitivity",
                         path=search.sensitivity, fix="run python -m optim.sensitivity SPEC first, or remove the "
                                                      "field") from error


def _summary(search: SearchSpec, candidates: list[Candidate], tried: list[dict], skipped: dict[str, str],
             best: tuple[float, Candidate] | None, spec: ExperimentSpec) -> dict:
    chosen = next((t for t in tried if best is not None and t["candidate"] == best[1].variant.name), None)
    return {
        "budget_points": search.budget_points, "objective": search.objective,
        "objective_batch": min(spec.batch_sizes) if search.objective == "latency" else max(spec.batch_sizes),
        "grid_size": len(candidates), "evaluated": len(tried), "tried": tried,
        "skipped": [{"candidate": name, "reason": reason} for name, reason in skipped.items()],
        "chosen": chosen, "resamples": RESAMPLES, "seed": spec.seed,
    }

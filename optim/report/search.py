"""The report's "Search" section and its deployment advice as data: the candidates a search tried (mAP-loss bound,
objective, within budget or not), what it ruled out and why, and which variant to deploy: the best one, on the
search's objective, among every measured variant whose paired 95 % upper bound of mAP loss is within the budget.
Rendered by templates/search.html."""

from __future__ import annotations

from optim.report import fmt
from optim.report.summary import is_ok, latency_by_batch, measured

OBJECTIVE_TEXT = {"latency": "p50 latency at batch {bs}", "throughput": "throughput at batch {bs}",
                  "size": "size on disk"}


def loss_bound(variant: dict) -> float | None:
    """Upper bound of the paired 95 % interval of the variant's mAP loss to the baseline, in points."""
    pair = (variant.get("intervals") or {}).get("map_delta")
    return None if not pair else -pair[0] * 100


def _objective(variant: dict, objective: str, batch: int) -> float | None:
    """Lower is better: ms, negative images/s, or bytes."""
    if objective == "size":
        return measured(variant.get("model_size_bytes"))
    record = latency_by_batch(variant).get(batch, {})
    if objective == "latency":
        return measured(record.get("p50_ms"))
    value = measured(record.get("throughput_ips"))
    return None if value is None else -value


def _show(value: float | None, objective: str) -> str:
    if value is None:
        return fmt.DASH
    return {"latency": f"{fmt.ms(value)} ms", "throughput": f"{fmt.ms(-value)} img/s",
            "size": f"{fmt.megabytes(value)} MB"}[objective]


def deployment(results: dict) -> dict | None:
    """The variant to deploy and why; None without a search."""
    search = results.get("search")
    if not search or "error" in search:
        return None
    objective, batch, budget = search["objective"], search["objective_batch"], search["budget_points"]
    scored = [(value, bound, v) for v in results.get("variants", []) if is_ok(v)
              and (bound := loss_bound(v)) is not None and (value := _objective(v, objective, batch)) is not None]
    within = sorted((s for s in scored if s[1] <= budget), key=lambda s: s[0])
    what = OBJECTIVE_TEXT[objective].format(bs=batch)
    points = f"{budget:g} point{'' if budget == 1 else 's'}"
    if not within:
        return {"name": None, "why": f"no measured variant keeps its mAP loss within {points} (95 % bound)"}
    value, bound, chosen = within[0]
    kept = next((s.get("keep_float") for s in chosen.get("steps") or [] if s.get("kind") == "quantize"), None)
    blocks = f"keeps {', '.join(kept)} in float" if kept else "quantizes every block" if chosen.get("precision") != "fp32" \
        else "stays in float"
    why = (f"best {what} ({_show(value, objective)}) among the {len(within)} variants whose paired 95 % upper bound "
           f"of mAP loss is within {points}; its bound is {bound:.2f} points; it {blocks}")
    ties = [v["name"] for other, _, v in within[1:] if _tie(chosen, v, objective, batch)]
    if ties:
        why += f"; not distinguishable on latency from {', '.join(ties)} (p50 intervals overlap)"
    faster = [(v["name"], b) for val, b, v in scored if val < value]
    if faster:
        name, over = min(faster, key=lambda f: f[1])
        why += f". Faster but over budget: {name} (loss up to {over:.2f} points)"
    return {"name": chosen["name"], "why": why}


def _tie(a: dict, b: dict, objective: str, batch: int) -> bool:
    if objective != "latency":
        return False
    x, y = latency_by_batch(a).get(batch, {}).get("p50_ci_ms"), latency_by_batch(b).get(batch, {}).get("p50_ci_ms")
    return bool(x and y and x[0] <= y[1] and y[0] <= x[1])


def search_context(results: dict) -> dict | None:
    """Rows and texts of the section; None when the spec had no search."""
    search = results.get("search")
    if not search:
        return None
    if "error" in search:
        return {"error": search["error"]}
    objective = search["objective"]
    return {
        "error": None, "budget": f"{search['budget_points']:g}", "objective": OBJECTIVE_TEXT[objective].format(bs=search["objective_batch"]),
        "grid": search["grid_size"], "evaluated": search["evaluated"], "deploy": deployment(results),
        "rows": [{"name": t["name"], "candidate": t["candidate"], "reused": t["reused"], "status": t["status"],
                  "bound": fmt.DASH if t["loss_upper_points"] is None else f"{t['loss_upper_points']:.2f}",
                  "objective": _show(t["objective"], objective), "feasible": t["feasible"],
                  "reason": t.get("reason")} for t in search["tried"]],
        "skipped": search["skipped"],
    }

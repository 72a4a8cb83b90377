"""Search within an mAP budget: the grid of a space, the order the sensitivity table gives it, what a measurement
rules out, the deployment advice, and an end-to-end run of a spec with a `search:` section on a tiny DETR."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from spec_helpers import tiny_spec

from optim.report.html import render_report
from optim.report.search import deployment
from optim.search import _priority, _prune, grid
from optim.spec import SearchSpec


def _space(**space) -> SearchSpec:
    return SearchSpec.model_validate({"space": space})


def test_grid_leaves_out_what_cannot_run():
    candidates = grid(_space(engines=["pytorch", "openvino"], precisions=["fp32", "int8", "fp16"],
                             keep_float=[[], ["heads"], ["backbone", "encoder", "decoder", "heads"]],
                             prune_ratios=[0.0, 0.3], distill=[False, True]))
    names = {c.variant.name for c in candidates}
    assert "search-openvino-int8-kf-heads-prune30-distill" in names and "search-pytorch-fp32" in names
    assert not any("pytorch-fp16" in n for n in names)  # fp16 does not run on CPU PyTorch
    assert not any(n.endswith("-distill") and "prune" not in n for n in names)  # nothing to distill back
    assert not any("kf-backbone.encoder.decoder.heads" in n for n in names)  # nothing left to quantize
    # fp32 ignores keep_float: one fp32 candidate per engine, prune ratio and distillation
    assert sum(n.startswith("search-openvino-fp32") for n in names) == 3
    quantize = next(c for c in candidates if c.variant.name == "search-pytorch-int8-kf-heads").variant.steps[-1]
    assert quantize.method == "torch_dynamic" and quantize.keep_float == ["heads"]


def _by_name(candidates):
    return {c.variant.name.removeprefix("search-"): c for c in candidates}


def test_sensitivity_orders_keep_float_sets():
    candidates = grid(_space(engines=["onnxruntime"], precisions=["int8"],
                             keep_float=[[], ["heads"], ["backbone"], ["backbone", "heads"]]))
    costs = {("onnxruntime", "ort_static"): {"backbone": 2.0, "encoder": 0.1, "decoder": 0.2, "heads": 0.3}}
    order = [c.variant.name.removeprefix("search-")
             for c in sorted(candidates, key=lambda c: _priority(c, costs, 1.0, {}))]
    # the backbone alone costs 2 points: sets keeping it in float come first (most aggressive first); sets the
    # table predicts over the budget come last
    assert order == ["onnxruntime-int8-kf-backbone", "onnxruntime-int8-kf-backbone.heads", "onnxruntime-int8",
                     "onnxruntime-int8-kf-heads"]
    # an engine the table has no row for comes after the predicted passes; a faster engine before a slower one
    more = grid(_space(engines=["pytorch", "openvino", "onnxruntime"], precisions=["int8"], keep_float=[[]]))
    order = [c.variant.name.removeprefix("search-")
             for c in sorted(more, key=lambda c: _priority(c, costs, 3.0, {"openvino": 4.0, "pytorch": 70.0}))]
    assert order == ["onnxruntime-int8", "openvino-int8", "pytorch-int8"]


def _entry(name: str, feasible: bool, objective: float) -> dict:
    return {"name": name, "status": "ok", "feasible": feasible, "objective": objective}


def test_measurements_rule_out_candidates():
    candidates = grid(_space(engines=["onnxruntime", "openvino"], precisions=["fp32", "int8"],
                             keep_float=[[], ["heads"], ["backbone", "heads"]]))
    c = _by_name(candidates)
    skipped: dict[str, str] = {}
    # ONNX Runtime's full INT8 is within budget: its less aggressive candidates are slower, not worth measuring
    done = [(c["onnxruntime-int8"], _entry("ort", True, 10.0))]
    pending = _prune([x for x in candidates if x is not c["onnxruntime-int8"]], done, (10.0, c["onnxruntime-int8"]),
                     skipped)
    assert {x.variant.name for x in pending} == {f"search-openvino-{s}" for s in
                                                 ("fp32", "int8", "int8-kf-heads", "int8-kf-backbone.heads")}
    assert "within the budget" in skipped["search-onnxruntime-int8-kf-heads"]
    # OpenVINO keeping the heads in float exceeds it: full INT8 (more aggressive) would too
    done.append((c["openvino-int8-kf-heads"], _entry("ov-heads", False, 8.0)))
    pending = _prune(pending, done, (10.0, c["onnxruntime-int8"]), skipped)
    assert "exceeded the budget" in skipped["search-openvino-int8"]
    # OpenVINO with backbone and heads in float is slower than the best: OpenVINO FP32 can only be slower still
    done.append((c["openvino-int8-kf-backbone.heads"], _entry("ov-bh", True, 12.0)))
    pending = _prune([x for x in pending if x is not c["openvino-int8-kf-backbone.heads"]], done,
                     (10.0, c["onnxruntime-int8"]), skipped)
    assert pending == [] and "search-openvino-fp32" in skipped


def _variant(name: str, p50: float, delta_low: float, keep=None) -> dict:
    steps = [] if keep is None else [{"kind": "quantize", "method": "nncf", "keep_float": keep}]
    return {"name": name, "status": "ok", "engine": "openvino", "precision": "fp32" if keep is None else "int8",
            "steps": steps, "accuracy": {"map": 0.5}, "latency": {"1": {"p50_ms": p50, "p50_ci_ms": [p50 - .1, p50 + .1]}},
            "intervals": {"map": [0.49, 0.51], "map_delta": [delta_low, 0.0], "speedup": {}}}


def test_deployment_advice():
    results = {"baseline": "fp32", "variants": [
        _variant("fp32", 10.0, 0.0), _variant("int8", 4.0, -0.03, []), _variant("int8-heads", 5.0, -0.006, ["heads"]),
        _variant("int8-heads-b", 5.05, -0.004, ["heads", "backbone"])],
        "search": {"budget_points": 1.0, "objective": "latency", "objective_batch": 1, "grid_size": 6, "evaluated": 2,
                   "tried": [], "skipped": []}}
    advice = deployment(results)
    assert advice["name"] == "int8-heads"
    assert "keeps heads in float" in advice["why"] and "0.60 points" in advice["why"]
    assert "not distinguishable on latency from int8-heads-b" in advice["why"]
    assert "Faster but over budget: int8 (loss up to 3.00 points)" in advice["why"]
    page = render_report(results)
    assert "Deploy int8-heads" in page and 'id="search"' in page
    # int8's point estimate shows no loss, but its 95 % bound is 3 points: not "within 1 pt"
    card = page[page.index("Fastest within 1 mAP pt"):][:200]
    assert "int8-heads" in card


BODY = """
variants:
  - name: fp32
    engine: {kind: pytorch}
search:
  budget_points: 1.0
  space: {engines: [pytorch], precisions: [fp32, int8], keep_float: [[], [heads], [backbone, heads]]}
"""


@pytest.mark.slow
def test_search_end_to_end(tmp_path, tiny_dataset_root):
    spec_path = tmp_path / "searched.yaml"
    spec_path.write_text(tiny_spec("searched", "tiny-detr-arch", tiny_dataset_root, BODY))
    result = subprocess.run([sys.executable, "-m", "optim.run", str(spec_path)], capture_output=True, text=True,
                            timeout=600, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "reports" / "searched"
    results = json.loads((out / "results.json").read_text())
    search = results["search"]
    assert search["grid_size"] == 4 and search["evaluated"] + len(search["skipped"]) == 4
    first = search["tried"][0]
    assert first["candidate"] == "search-pytorch-int8" and first["loss_upper_points"] is not None
    # the fp32 candidate is the baseline's own spec: reused, not measured again
    reused = [t for t in search["tried"] if t["reused"]]
    assert all(t["name"] == "fp32" for t in reused)
    names = [v["name"] for v in results["variants"]]
    assert "search-pytorch-int8" in names and all("intervals" in v for v in results["variants"])
    page = (out / "index.html").read_text()
    assert "Search within an accuracy budget" in page and "search-pytorch-int8" in page

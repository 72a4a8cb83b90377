"""Sensitivity: the generated one-block and one-unit variants, the heat table read from results, and an end-to-end
run of `python -m optim.sensitivity` on a tiny DETR (PyTorch dynamic INT8, one unit at a time)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from spec_helpers import tiny_spec

from optim.report.html import render_report
from optim.report.sensitivity import quantized_unit, sensitivity_context, sensitivity_rows
from optim.sensitivity import model_units, sensitivity_spec
from optim.spec import ExperimentSpec

BODY = """
variants:
  - name: fp32
    engine: {kind: pytorch}
  - name: int8
    steps: [{kind: quantize, method: torch_dynamic}]
    engine: {kind: pytorch}
  - name: int8-keep-heads
    steps: [{kind: quantize, method: torch_dynamic, keep_float: [heads]}]
    engine: {kind: pytorch}
  - name: bf16
    steps: [{kind: quantize, method: bf16}]
    engine: {kind: openvino}
"""


def _spec(tmp_path) -> ExperimentSpec:
    import yaml

    return ExperimentSpec.model_validate(yaml.safe_load(tiny_spec("sens", "tiny-detr-arch", tmp_path, BODY)))


def test_one_block_variants(tmp_path):
    derived = sensitivity_spec(_spec(tmp_path))
    names = [v.name for v in derived.variants]
    # the baseline, the float engine, the quantized variant and one variant per block; keep_float and bf16 skipped
    assert names == ["fp32", "int8", "int8.only-backbone", "int8.only-encoder", "int8.only-decoder", "int8.only-heads"]
    encoder = derived.variants[3].steps[-1]
    assert encoder.keep_float == ["backbone", "decoder", "heads"] and encoder.method == "torch_dynamic"
    assert derived.name == "sens-sensitivity" and derived.baseline == "fp32"
    blocks = [quantized_unit({"steps": [s.model_dump() for s in v.steps]}) for v in derived.variants]
    assert blocks == [None, "all", "backbone", "encoder", "decoder", "heads"]


def test_one_unit_variants(tmp_path):
    spec = _spec(tmp_path)
    units = model_units(spec)
    assert units == ["backbone.stem", "backbone.stage1", "backbone.stage2", "backbone.projection", "encoder.layer0",
                     "decoder.layer0", "heads.class", "heads.box"]  # tiny-detr: 2 stages, 1 layer each
    derived = sensitivity_spec(spec, ["int8"], units)
    names = [v.name for v in derived.variants]
    assert names == ["fp32", "int8", *[f"int8.only-{unit}" for unit in units]]
    stage2 = derived.variants[4].steps[-1]
    assert stage2.keep_float == [u for u in units if u != "backbone.stage2"] and stage2.method == "torch_dynamic"
    variants = [{"steps": [s.model_dump() for s in v.steps]} for v in derived.variants]
    every = {name for v in derived.variants[2:] for name in v.steps[-1].keep_float}
    assert [quantized_unit(v, every) for v in variants] == [None, "all", *units]


def _variant(name: str, keep: list[str] | None, map_: float, p50: float, delta_ci) -> dict:
    steps = [] if keep is None else [{"kind": "quantize", "method": "nncf", "keep_float": keep}]
    return {"name": name, "status": "ok", "engine": "openvino", "precision": "fp32" if keep is None else "int8",
            "steps": steps, "accuracy": {"map": map_}, "latency": {"1": {"p50_ms": p50}},
            "intervals": {"map": [map_ - 0.01, map_ + 0.01], "map_delta": delta_ci, "speedup": {}}}


def test_heat_table_from_results():
    results = {"baseline": "fp32", "variants": [
        _variant("fp32", None, 0.50, 10.0, [0, 0]),
        _variant("q.only-backbone", ["encoder", "decoder", "heads"], 0.49, 8.0, [-0.02, -0.005]),
        _variant("q.only-heads", ["backbone", "encoder", "decoder"], 0.499, 9.9, [-0.004, 0.002]),
        _variant("q", [], 0.47, 5.0, [-0.04, -0.02]),
    ]}
    (row,) = sensitivity_rows(results)
    assert row["key"] == "openvino · nncf" and row["reference"] == "fp32"
    assert row["cells"]["backbone"]["delta"] == pytest.approx(-1.0) and row["cells"]["backbone"]["speedup"] == 1.25
    assert row["cells"]["all"]["speedup"] == 2.0 and "encoder" not in row["cells"]
    page = render_report(results)
    assert 'id="sensitivity"' in page and "heat-2" in page  # backbone: 1 point lost
    heads = page[page.index('title="q.only-heads"'):][:300]
    assert "n.d." in heads and "heat-0" in page


@pytest.mark.slow
def test_sensitivity_command_end_to_end(tmp_path, tiny_dataset_root):
    spec_path = tmp_path / "sens.yaml"
    spec_path.write_text(tiny_spec("sens", "tiny-detr-arch", tiny_dataset_root, BODY))
    result = subprocess.run([sys.executable, "-m", "optim.sensitivity", str(spec_path), "--variants", "int8"],
                            capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "reports" / "sens-sensitivity"
    results = json.loads((out / "results.json").read_text())
    assert [v["status"] for v in results["variants"]] == ["ok"] * 10
    (row,) = sensitivity_rows(results)
    units = ["backbone.stem", "backbone.stage1", "backbone.stage2", "backbone.projection", "encoder.layer0",
             "decoder.layer0", "heads.class", "heads.box"]
    assert list(row["cells"]) == ["all", *units]
    assert all(cell["speedup"] > 0 and cell["delta_ci"] is not None for cell in row["cells"].values())
    # tiny-detr's Linear layers: the stem, stages and projection are convolutions, which dynamic INT8 leaves
    # float, so quantizing them alone changes nothing
    assert all(row["cells"][unit]["delta"] == 0 for unit in units[:4])
    assert sensitivity_context(results)["columns"] == [*units, "all"]
    page = (out / "index.html").read_text()
    table = page[page.index('id="sensitivity"'):][:6000]
    assert "Layer sensitivity" in table and '<th colspan="4">backbone</th>' in table and ">stage2</th>" in table
    assert '<th colspan="2">heads</th>' in table and 'title="int8.only-decoder.layer0"' in table
    bad = subprocess.run([sys.executable, "-m", "optim.sensitivity", str(spec_path), "--variants", "bf16"],
                         capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert bad.returncode == 2 and "no variant to analyse" in bad.stderr and "Traceback" not in bad.stderr

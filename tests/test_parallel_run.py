"""A spec's `scenarios:` section: the runner measures each variant in each scenario named, and the report shows
a section per scenario with the timeline and a Chrome trace file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("openvino")
pytest.importorskip("mlperf_loadgen", reason="needs the 'parallel' extra (mlcommons-loadgen)")

SPEC = """
name: scen
model: synth-detr
data: {{dataset: synthetic, root: {root}, eval_split: test, eval_images: 4, calibration_split: val, calibration_images: 4}}
latency: {{warmup_iters: 1, min_iters: 3, max_iters: 10, max_seconds: 0.3, reference: false}}
output_dir: reports
variants:
  - name: openvino-fp32
    engine: {{kind: openvino}}
scenarios:
  run: [offline, multistream]
  seconds: 0.3
  max_streams: 2
  streams: [1]
  batch: [1, 2]
  inflight: [2]
"""


@pytest.mark.slow
def test_spec_scenarios_are_measured_and_reported(tmp_path, tiny_dataset_root):
    spec = tmp_path / "scen.yaml"
    spec.write_text(SPEC.format(root=tiny_dataset_root))
    result = subprocess.run([sys.executable, "-m", "optim.run", str(spec)], capture_output=True, text=True,
                            timeout=600, check=False, cwd=tmp_path)  # a spec's output_dir stays under the working folder
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "reports" / "scen"
    variant = json.loads((out / "results.json").read_text())["variants"][0]
    parallel = variant["parallel"]
    assert set(parallel) == {"tuning", "offline", "multistream"}  # only the scenarios the spec names
    assert [p["settings"]["batch"] for p in parallel["tuning"]["curve"]] == [1, 2]
    trace = json.loads((out / parallel["multistream"]["trace_file"]).read_text())
    assert {e["cat"] for e in trace["traceEvents"] if e["ph"] == "X"} >= {"decode", "inference"}
    html = (out / "index.html").read_text()
    assert 'id="parallel"' in html and "Offline: maximum throughput" in html and "MultiStream — openvino-fp32" in html
    assert "<b>Best parallel setting</b>" in html  # in the summary too
    assert "Server —" not in html and f'href="{parallel["multistream"]["trace_file"]}"' in html

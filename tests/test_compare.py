"""python -m optim.compare: identical runs pass, a slower or less accurate variant fails, bad input exits 2."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from optim.compare import compare, load_results
from optim.errors import OptimError

ROOT = Path(__file__).resolve().parents[1]


def _latency(samples: np.ndarray) -> dict:
    return {"p50_ms": float(np.median(samples)), "std_ms": float(samples.std()),
            "samples_ms": samples.round(4).tolist()}


def _variant(name: str, base_ms: float, map_: float, seed: int, status: str = "ok") -> dict:
    samples = base_ms * (1 + 0.02 * np.random.default_rng(seed).standard_normal(60))  # 2% noise
    if status != "ok":
        return {"name": name, "status": status, "error": "RuntimeError: boom"}
    return {"name": name, "status": "ok", "latency": {"1": _latency(samples)}, "accuracy": {"map": map_}}


def _results(*variants: dict) -> dict:
    return {"experiment": "t", "baseline": variants[0]["name"], "variants": list(variants)}


@pytest.fixture
def run_a() -> dict:
    return _results(_variant("pytorch-fp32", 20.0, 0.40, 1), _variant("onnxruntime-int8", 8.0, 0.38, 2))


def _write(folder: Path, results: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def _cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "optim.compare", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)


def test_identical_runs_pass(tmp_path, run_a):
    a = _write(tmp_path / "a", run_a)
    result = _cli(a, a / "results.json")  # a folder and the file itself both work
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no regression" in result.stdout
    assert "pytorch-fp32" in result.stdout and "onnxruntime-int8" in result.stdout


def test_slower_variant_fails_and_is_named(tmp_path, run_a):
    run_b = copy.deepcopy(run_a)
    samples = np.asarray(run_b["variants"][1]["latency"]["1"]["samples_ms"]) * 1.5
    run_b["variants"][1]["latency"]["1"] = _latency(samples)
    result = _cli(_write(tmp_path / "a", run_a), _write(tmp_path / "b", run_b))
    assert result.returncode == 1, result.stdout + result.stderr
    regression_lines = [line for line in result.stdout.splitlines() if "REGRESSION" in line]
    assert len(regression_lines) == 1 and regression_lines[0].startswith("onnxruntime-int8")
    assert "+50" in regression_lines[0] or "+49" in regression_lines[0] or "+51" in regression_lines[0]


def _scaled(results: dict, factor: float) -> dict:
    """`results` with the first variant's samples multiplied by `factor`."""
    scaled = copy.deepcopy(results)
    record = scaled["variants"][0]["latency"]["1"]
    scaled["variants"][0]["latency"]["1"] = _latency(np.asarray(record["samples_ms"]) * factor)
    return scaled


def test_run_to_run_spread_of_reference_runs_widens_the_latency_limit(tmp_path, run_a):
    """With one reference run, a 15 % slowdown fails (only sampling noise, ~1 % here, widens the 10 % limit);
    with three reference runs whose p50s spread by ±15 %, the same run is within their run-to-run noise."""
    slower = _scaled(run_a, 1.15)
    assert [r.variant for r in compare([run_a], slower).regressions] == ["pytorch-fp32"]
    spread = [run_a, _scaled(run_a, 0.85), _scaled(run_a, 1.15)]
    assert not compare(spread, slower).regressions
    assert compare(spread, _scaled(run_a, 2.0)).regressions  # far beyond the spread: still caught
    folders = [_write(tmp_path / f"a{i}", run) for i, run in enumerate(spread)]
    result = _cli(*folders, _write(tmp_path / "b", slower))
    assert result.returncode == 0, result.stdout + result.stderr


def test_latency_timed_on_a_busy_machine_is_marked(run_a):
    busy = copy.deepcopy(run_a)
    busy["variants"][1]["latency"]["1"]["background_cpu"] = 0.45
    assert compare([run_a], busy).busy == ["onnxruntime-int8 @bs1: B timed with 45% background CPU"]
    assert not compare([run_a], run_a).busy


def test_map_drop_fails(tmp_path, run_a):
    run_b = copy.deepcopy(run_a)
    run_b["variants"][0]["accuracy"]["map"] = 0.40 - 0.02
    result = _cli(_write(tmp_path / "a", run_a), _write(tmp_path / "b", run_b))
    assert result.returncode == 1
    assert any(line.startswith("pytorch-fp32") and "mAP" in line and "REGRESSION" in line
               for line in result.stdout.splitlines())
    # A drop within the threshold is not a regression.
    run_b["variants"][0]["accuracy"]["map"] = 0.40 - 0.005
    assert not compare([run_a], run_b).regressions


def test_failed_in_b_is_a_regression(run_a):
    run_b = copy.deepcopy(run_a)
    run_b["variants"][1] = _variant("onnxruntime-int8", 0, 0, 0, status="failed")
    rows = compare([run_a], run_b).regressions
    assert [(r.variant, r.metric) for r in rows] == [("onnxruntime-int8", "status")]
    assert "boom" in rows[0].verdict


def test_missing_file_exits_2(tmp_path, run_a):
    result = _cli(_write(tmp_path / "a", run_a), tmp_path / "nowhere")
    assert result.returncode == 2
    assert "nowhere" in result.stderr and "Traceback" not in result.stderr


def test_invalid_json_names_the_file(tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text("{not json")
    with pytest.raises(OptimError, match="results.json"):
        load_results(tmp_path)
    bad.write_text(json.dumps({"variants": "nope"}))
    with pytest.raises(OptimError, match="variants"):
        load_results(bad)


def test_a_moved_machine_speed_probe_is_reported_not_corrected(run_a):
    """The probe beside each figure is shown when it moved > 15 %; the verdict still rests on the latency."""
    for variant in run_a["variants"]:
        variant["latency"]["1"]["probe_ms"] = 0.5
    slower = _scaled(run_a, 1.3)
    slower["variants"][0]["latency"]["1"]["probe_ms"] = 0.65
    rows = compare([run_a], slower).rows
    assert rows[0].regression and "machine +30% (probe)" in rows[0].verdict
    assert "probe" not in compare([run_a], run_a).rows[0].verdict


def test_every_batch_size_counts_only_a_variant_slower_at_all_of_them(run_a):
    """A one-window slowdown (batch 1 only) is not counted with every_batch_size; one at every batch size is."""
    for variant in run_a["variants"]:
        variant["latency"]["8"] = copy.deepcopy(variant["latency"]["1"])
    one_window = copy.deepcopy(run_a)
    samples = np.asarray(run_a["variants"][0]["latency"]["1"]["samples_ms"])
    one_window["variants"][0]["latency"]["1"] = _latency(samples * 1.5)
    assert compare([run_a], one_window).regressions
    rows = compare([run_a], one_window, every_batch_size=True).rows
    assert not [r for r in rows if r.regression] and "not at every batch size" in rows[0].verdict
    everywhere = copy.deepcopy(one_window)
    everywhere["variants"][0]["latency"]["8"] = copy.deepcopy(one_window["variants"][0]["latency"]["1"])
    flagged = compare([run_a], everywhere, every_batch_size=True).regressions
    assert [(r.variant, r.metric) for r in flagged] == [("pytorch-fp32", "p50 ms @bs1"),
                                                        ("pytorch-fp32", "p50 ms @bs8")]


def test_a_figure_timed_with_the_machine_slow_throughout_is_inconclusive_not_a_regression(tmp_path, run_a):
    """Slower and unsteady (no steady-state chunk): exit 3, re-run; slower and steady: a regression (exit 1)."""
    slower = _scaled(run_a, 1.5)
    record = slower["variants"][0]["latency"]["1"]
    record.update(steady=False, steady_fraction=0.0, probe_ms=0.7, probe_fastest_ms=0.56)
    rows = compare([run_a], slower).rows
    assert rows[0].inconclusive and not rows[0].regression
    assert "slow throughout, probe +25% over its fastest" in rows[0].verdict
    result = _cli(_write(tmp_path / "a", run_a), _write(tmp_path / "b", slower))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "inconclusive" in result.stdout and "pytorch-fp32" in result.stdout.splitlines()[-1]
    record["steady"] = True
    result = _cli(tmp_path / "a", _write(tmp_path / "b", slower))
    assert result.returncode == 1, result.stdout + result.stderr

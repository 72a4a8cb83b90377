"""The HTML report and CSV: Pareto frontier, content, escaping of user strings, offline-only links."""

from __future__ import annotations

import copy
import csv
import json
import re

import pytest
from markupsafe import escape  # the escaping of the report's templates (Jinja2 autoescape)

from optim.report import pareto_frontier, write_report, write_tables
from optim.report.demo import demo_results

XSS_NAME = "<script>alert(1)</script>"
XSS_ERROR = 'bad <img src=x onerror="alert(2)"> & worse'


def _ok_names(results: dict) -> list[str]:
    return [v["name"] for v in results["variants"] if v["status"] == "ok"]


def _embedded_data(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.DOTALL)
    assert match, "chart data block missing"
    return json.loads(match.group(1))


# ---- Pareto frontier ----

def test_pareto_excludes_dominated_points():
    points = [("fast", 5.0, 0.30), ("mid", 8.0, 0.40), ("slow-best", 20.0, 0.45),
              ("dominated", 9.0, 0.35),       # mid is faster and more accurate
              ("same-speed-worse", 8.0, 0.39)]  # equal latency, lower mAP
    assert pareto_frontier(points) == ["fast", "mid", "slow-best"]


def test_pareto_ties_and_invalid_points():
    points = [("b", 5.0, 0.4), ("a", 5.0, 0.4),    # identical: neither dominates the other
              ("faster-same-map", 4.0, 0.4),         # dominates a and b (strictly faster, same mAP)
              ("best", 6.0, 0.5), ("missing", None, 0.9), ("nan", float("nan"), 0.9)]
    assert pareto_frontier(points) == ["faster-same-map", "best"]
    assert pareto_frontier([("b", 5.0, 0.4), ("a", 5.0, 0.4)]) == ["a", "b"]
    assert pareto_frontier([]) == []


# ---- page content ----

@pytest.fixture()
def results() -> dict:
    return demo_results()


def test_page_lists_every_variant_and_failure_reason(results, tmp_path):
    path = write_report(results, tmp_path)
    assert path == tmp_path / "index.html"
    page = path.read_text()
    for variant in results["variants"]:
        assert variant["name"] in page
    failed = next(v for v in results["variants"] if v["status"] == "failed")
    assert escape(failed["error"]) in page
    assert 'data-failed="1"' in page  # the failed variant has its own summary row
    assert "random weights" not in page  # trained model: no warning banner

    data = _embedded_data(page)
    assert [p["name"] for p in data["points"]] == _ok_names(results)
    assert data["frontier"] == pareto_frontier((p["name"], p["p50"], p["map"]) for p in data["points"])
    # openvino-int8 dominates onnxruntime-int8 (faster and more accurate) in the demo data
    assert "openvino-int8" in data["frontier"] and "onnxruntime-int8" not in data["frontier"]
    baseline = next(p for p in data["points"] if p["baseline"])
    assert baseline["speedup"] == pytest.approx(1.0) and baseline["delta"] == pytest.approx(0.0)
    ort_int8 = next(p for p in data["points"] if p["name"] == "onnxruntime-int8")
    assert ort_int8["delta"] == pytest.approx((0.398 - 0.412) * 100)


def test_untrained_model_warns(results, tmp_path):
    results["model"]["trained"] = False
    page = write_report(results, tmp_path).read_text()
    assert "random weights — accuracy not meaningful" in page


def test_user_strings_are_escaped(results, tmp_path):
    results["variants"][1]["name"] = XSS_NAME
    results["variants"][-1]["error"] = XSS_ERROR
    results["variants"][1]["notes"] = ["</script><script>alert(3)</script>"]
    page = write_report(results, tmp_path).read_text()
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "bad &lt;img src=x onerror=&#34;alert(2)&#34;&gt; &amp; worse" in page
    # the JSON block cannot be closed early by a name, and still decodes to the original name
    assert XSS_NAME in [p["name"] for p in _embedded_data(page)["points"]]
    assert page.count("<script") == 2  # the data block and the page's own script, nothing injected


def test_no_external_resources(results, tmp_path):
    variant = results["variants"][0]
    variant["profile_files"] = {"remote": "https://example.com/trace.json", "js": "javascript:alert(1)",
                                "inside": str(tmp_path / "traces" / "a b.json"), "outside": "/etc/passwd",
                                "relative": "traces/x.html"}
    page = write_report(results, tmp_path).read_text()
    links = re.findall(r'\b(?:src|href)\s*=\s*["\']([^"\']*)', page, re.IGNORECASE)
    assert links, "expected some local links"
    for link in links:
        assert not re.match(r"^\s*(?:[a-z][a-z0-9+.-]*:|//)", link, re.IGNORECASE), f"non-local link {link!r}"
    assert 'href="traces/a%20b.json"' in page  # absolute path inside the report folder -> relative link
    assert 'href="traces/x.html"' in page
    assert "https://example.com/trace.json" in page  # shown as text, not linked
    assert "@import" not in page and "url(" not in page


def test_baseline_failed_and_sparse_variants(results, tmp_path):
    results["variants"][0].update(status="failed", error="export failed", accuracy=None, latency={})
    results["variants"][2].update(stages=None, latency={}, accuracy=None)
    page = write_report(results, tmp_path).read_text()
    assert "deltas and speedups cannot be computed" in page
    data = _embedded_data(page)
    assert all(p["delta"] is None and p["speedup"] is None for p in data["points"])
    assert results["variants"][2]["name"] not in [p["name"] for p in data["points"]]


# ---- CSV ----

def test_csv_one_row_per_variant_and_batch(results, tmp_path):
    path = write_tables(copy.deepcopy(results), tmp_path)
    rows = list(csv.DictReader(path.open()))
    ok = _ok_names(results)
    assert len(rows) == len(ok) * 2 + 1  # batches 1 and 8, plus one row for the failed variant
    baseline_rows = [r for r in rows if r["variant"] == "pytorch-fp32"]
    assert {r["batch_size"] for r in baseline_rows} == {"1", "8"}
    assert all(float(r["speedup_vs_baseline"]) == pytest.approx(1.0) for r in baseline_rows)
    ov = next(r for r in rows if r["variant"] == "openvino-int8" and r["batch_size"] == "1")
    base = next(r for r in baseline_rows if r["batch_size"] == "1")
    assert float(ov["speedup_vs_baseline"]) == pytest.approx(float(base["p50_ms"]) / float(ov["p50_ms"]), rel=1e-3)
    assert float(ov["delta_map_points"]) == pytest.approx(-0.9, abs=1e-6)
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["batch_size"] == "" and "CUDA" in failed["error"]


def test_headline_cards(results, tmp_path):
    page = write_report(results, tmp_path).read_text()
    kpis = re.search(r'<div class="kpis">(.*?)</div>\s*\n', page, re.DOTALL).group(1)
    cards = dict(re.findall(r"<span>([^<]+)</span><b>([^<]+)</b>", kpis))
    assert cards["Fastest"] == "pruned30-ort-int8"  # 3.4x, but -4.1 mAP points
    assert cards["Fastest within 1 mAP pt"] == "openvino-int8"  # 2.9x at -0.9 points
    assert cards["Variants"] == "6 measured"


def test_all_variants_failed(results, tmp_path):
    for variant in results["variants"]:
        variant.update(status="failed", error="boom", accuracy=None, latency={}, stages=None)
    page = write_report(results, tmp_path).read_text()
    assert page.count('data-failed="1"') == len(results["variants"])
    assert 'id="report-data"' not in page and "No successful variant" in page


def test_a_busy_machine_during_timing_is_called_out(results, tmp_path):
    record = results["variants"][1]["latency"]["1"]
    record["background_cpu"], record["probe_ms"] = 0.35, 0.7
    page = write_report(results, tmp_path).read_text()
    assert "Timed on a busy machine" in page and f"{results['variants'][1]['name']} @bs1" in page
    record["background_cpu"] = 0.02
    page = write_report(results, tmp_path).read_text()
    assert "Timed on a busy machine" not in page and "at most 2% of the CPU" in page


def test_figures_timed_while_the_machine_was_slow_are_called_out(results, tmp_path):
    for variant in results["variants"]:
        for record in (variant.get("latency") or {}).values():
            record.update(background_cpu=0.0, probe_ms=0.57, steady=True, steady_fraction=0.8)
    page = write_report(results, tmp_path).read_text()
    assert escape("On average 20% of a figure's timed iterations ran with the machine in a slower state") in page
    assert "Timed while the machine was slow" not in page
    record = results["variants"][1]["latency"]["1"]
    record.update(steady=False, steady_fraction=0.0, probe_ms=0.7)
    page = write_report(results, tmp_path).read_text()
    assert "Timed while the machine was slow" in page and f"{results['variants'][1]['name']} @bs1" in page


def test_summary_columns_are_data(results, monkeypatch):
    """A column added to SUMMARY_COLUMNS shows in the header and in every successful variant's row."""
    from optim.report import html as report_html
    from optim.report.cells import Cell, Column

    extra = report_html.SummaryColumn(Column("Energy", "J/img", "num"), lambda row: Cell("4.2", sort="4.2"))
    monkeypatch.setattr(report_html, "SUMMARY_COLUMNS", [*report_html.SUMMARY_COLUMNS, extra])
    page = report_html.render_report(results)
    assert "Energy<br><small>J/img</small>" in page
    assert page.count('data-v="4.2">4.2</td>') == len(_ok_names(results))
    assert f'colspan="{len(report_html.SUMMARY_COLUMNS)}"' in page  # a failed row spans every figure column


def _reference(ratio: float) -> dict:
    lab, tool = 2.0 * ratio, 2.0
    return {"batch_size": 1, "tool": "benchmark_app", "statistic": "median", "reference_ms": tool, "ratio": ratio,
            "agrees": 1 / 1.15 <= ratio <= 1.15,
            "rounds": [{"tool": "benchmark_app", "command": "benchmark_app -m model.xml", "statistic": "median",
                        "reference_ms": tool, "lab_ms": lab, "ratio": ratio, "agrees": 1 / 1.15 <= ratio <= 1.15}]}


def test_cross_check_shows_the_tool_beside_the_lab_and_flags_disagreement(results, tmp_path):
    ok = [v for v in results["variants"] if v["status"] == "ok"]
    ok[0]["timing"] = {"timed": "worker process", "reference": _reference(1.05)}
    ok[1]["timing"] = {"timed": "in-process", "reference": {"error": "RuntimeError: benchmark_app failed", "rounds": []}}
    ok[0]["peak_share"] = {"achieved_ops": 3e10, "peak_ops": 1.5e11, "share": 0.2, "peak_precision": "fp32"}
    results["machine_peaks"] = {"fp32": 1.5e11, "int8": 1.4e12}
    page = write_report(results, tmp_path).read_text()
    assert "Latency cross-check" in page and "FP32 150 GOP/s, INT8 1,400 GOP/s" in page
    assert "1.05" in page and "20.0%" in page and "reference tool failed: RuntimeError: benchmark_app failed" in page
    assert "disagree by more than 15 %" not in page
    ok[0]["timing"]["reference"] = _reference(1.4)
    page = write_report(results, tmp_path).read_text()
    assert "disagree by more than 15 %" in page and f"for\n  {ok[0]['name']}" in page
    rows = list(csv.DictReader(write_tables(results, tmp_path).open()))
    row = next(r for r in rows if r["variant"] == ok[0]["name"])
    assert row["reference_tool"] == "benchmark_app" and row["lab_over_reference"] == "1.4"


def test_results_without_timing_records_have_no_cross_check(results, tmp_path):
    assert "Latency cross-check" not in write_report(results, tmp_path).read_text()

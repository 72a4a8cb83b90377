"""The report in a real browser: headless Chromium renders it offline, its script draws the chart.

Set OPTIM_ARTIFACTS_DIR to keep the screenshot (CI artifact)."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from optim.report import write_report
from optim.report.demo import demo_results

CHROMIUM = Path("/usr/bin/chromium")
INJECTED = 'ort<img src=x onerror="document.title=\'pwned\'">'
KEEP = ("pytorch-fp32", "onnxruntime-int8", "openvino-int8", "tensorrt-fp16")  # tensorrt-fp16 failed

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium not installed (apt-get install chromium)")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    return subprocess.run([str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=90, check=False)


@pytest.fixture()
def report(tmp_path: Path) -> tuple[Path, dict]:
    results = demo_results()
    results["variants"] = [v for v in results["variants"] if v["name"] in KEEP]
    results["variants"][1]["name"] = INJECTED  # a hostile name must render as text, never as markup
    return write_report(results, tmp_path / "report"), results


def test_screenshot_renders(report, tmp_path):
    page, _ = report
    shot = tmp_path / "report.png"
    run = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,2400", page.as_uri())
    assert shot.is_file(), f"no screenshot; chromium said:\n{run.stderr[-2000:]}"
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert (width, height) == (1400, 2400)
    assert len(data) > 60_000, "screenshot is almost empty: the page did not render"
    if os.environ.get("OPTIM_ARTIFACTS_DIR"):
        artifacts = Path(os.environ["OPTIM_ARTIFACTS_DIR"])
        artifacts.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, artifacts / "report.png")


def test_script_draws_chart(report, tmp_path):
    page, results = report
    run = _chromium(tmp_path, "--dump-dom", page.as_uri())
    dom = run.stdout
    assert "</html>" in dom, f"no DOM dumped; chromium said:\n{run.stderr[-2000:]}"

    ok = [v["name"] for v in results["variants"] if v["status"] == "ok"]
    points = re.findall(r'<circle[^>]*class="point(?: [^"]*)?"[^>]*>', dom)
    assert len(points) == len(ok) == 3, "the script must draw one point per successful variant"
    assert sum('class="point pareto' in p for p in points) >= 1
    assert sum("baseline" in p for p in points) == 1
    assert re.search(r'<path class="pareto-line" d="M[\d.]+,[\d.]+', dom), "Pareto step line missing"
    labels = re.findall(r'<text class="point-label[^"]*"[^>]*>([^<]*)</text>', dom)
    assert len(labels) == 3 and "pytorch-fp32 (baseline)" in labels
    assert len(re.findall(r'<text class="tick"', dom)) > 8  # both scatter axes got ticks

    # The injected name stays text in the DOM after the script ran: no <img> element, title untouched.
    assert "<img" not in dom
    assert "pwned" not in re.search(r"<title>(.*?)</title>", dom, re.DOTALL).group(1)
    assert "ort&lt;img src=x" in dom

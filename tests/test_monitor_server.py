"""optim.monitor on the real server: a PyTriton server (python -m optim.serve) on free loopback ports with a drift
reference in its repository; the replay streams short clips through it over HTTP; its monitoring /metrics and
Triton's /metrics are scraped for real, and every metric the dashboard and the alerting rules query is exported."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_monitoring_files import exported_names, queried_metrics

from optim.monitor.metrics import Identity
from optim.monitor.replay import ReplayConfig, build_reference
from optim.monitor.targets import InProcess
from optim.serving.environment import serving_python, serving_ready
from optim.serving.launch import ServerProcess
from optim.serving.options import ServingOptions
from optim.serving.repository import deploy_variant
from optim.serving.server import MONITOR_REFERENCE

pytestmark = pytest.mark.skipif(not (serving_ready() or serving_python().is_file()),
                                reason="no serving environment: run `make serve-setup` (PyTriton needs numpy<2)")

MODELS = ["onnxruntime-fp32", "onnxruntime-fp32_detect"]


@pytest.fixture(scope="module")
def monitored_server(served_report, tmp_path_factory):
    repository = tmp_path_factory.mktemp("monitored") / "repo"
    manifest = deploy_variant(served_report, "onnxruntime-fp32", repository, ServingOptions())
    build_reference(InProcess(repository, manifest, 1, with_metrics=False), 40, ReplayConfig()).save(
        repository / MONITOR_REFERENCE)
    with ServerProcess(repository, MODELS) as server:
        yield server, repository
    assert server.process.returncode == 0, "the server did not stop cleanly"


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_replay_through_the_server_and_scrape_both_endpoints(monitored_server, tmp_path):
    server, repository = monitored_server
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, "-m", "optim.monitor", "replay", str(repository), "--server",
                             server.http_url, "--frames", "320", "--shifts", "dark:120-320", "--inject-bad",
                             "--accuracy-window", "60", "--boot", "30", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    log = json.loads((out / "replay.json").read_text())
    assert log["target"] == "server" and log["errors"]["decode"] == 1
    assert log["detection"][0]["within_target"], log["alerts"]
    assert server.ready()  # the bad input did not take it down

    text = _scrape(server.monitor_url)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    identity = Identity.of_repository(repository)
    images = next(s for s in families["optim_images"].samples if s.name == "optim_images_total")
    assert images.labels == {"variant": "onnxruntime-fp32", "manifest_hash": identity.manifest_hash}
    assert images.value >= 320
    errors = {s.labels["cause"]: s.value for s in families["optim_errors"].samples if s.name == "optim_errors_total"}
    assert errors["decode"] == 1
    pvalues = {s.labels["statistic"]: s.value for s in families["optim_drift_pvalue"].samples}
    assert set(pvalues) >= {"brightness", "contrast", "sharpness", "classes"}
    assert pvalues["brightness"] < 1e-4  # the server's own drift monitor sees the dark frames
    assert families["optim_drift_alert"].samples[0].value == 1.0

    triton = _scrape(server.metrics_url)
    assert 'nv_inference_request_success{model="onnxruntime-fp32_detect"' in triton
    exported = exported_names(text) | exported_names(triton)
    assert queried_metrics() <= exported, queried_metrics() - exported

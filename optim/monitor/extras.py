"""Lazy imports of the `monitor` extra's packages, each naming the extra that installs it."""

from __future__ import annotations

from types import ModuleType

from optim.errors import import_extra


def prometheus_client() -> ModuleType:
    return import_extra("prometheus_client", "prometheus-client", "monitor", "Monitoring metrics")


def jinja2() -> ModuleType:
    return import_extra("jinja2", "jinja2", "monitor", "The replay report")

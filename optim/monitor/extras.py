"""Lazy imports of the `monitor` extra's packages, each naming the extra that installs it."""

from __future__ import annotations

from optim.errors import MissingExtraError


def prometheus_client():
    try:
        import prometheus_client as module
    except ImportError as error:
        raise MissingExtraError("prometheus-client", "monitor", "Monitoring metrics") from error
    return module


def jinja2():
    try:
        import jinja2 as module
    except ImportError as error:
        raise MissingExtraError("jinja2", "monitor", "The replay report") from error
    return module

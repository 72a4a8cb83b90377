"""The experiment report: an offline HTML page (`write_report`) and a CSV table (`write_tables`)."""

from optim.report.html import render_report, write_report
from optim.report.summary import pareto_frontier
from optim.report.tables import write_tables

__all__ = ["pareto_frontier", "render_report", "write_report", "write_tables"]

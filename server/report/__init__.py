"""``hilnas report``: what runs found, for people (an HTML page, Markdown, PNGs) and machines (CSV, JSON).

- ``data``: the runs' networks, budgets, curves and failures gathered from the store;
- ``plots``: the figures (matplotlib); ``tables``: the tables as rows of text;
- ``html`` / ``markdown``: the two renderings; ``write``: writing them all into a folder.
"""
from hilnas.server.report.data import ReportData, ReportError, collect, reportable_runs
from hilnas.server.report.write import check_writable, write_report

__all__ = ["ReportData", "ReportError", "check_writable", "collect", "reportable_runs", "write_report"]

"""Rollups of the ledger for the people who pay: `guard report` and `guard reconcile`."""
from guard.report.rollup import GROUPS, Report, build_report, resolve_range

__all__ = ["GROUPS", "Report", "build_report", "resolve_range"]

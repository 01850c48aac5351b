"""The run report: report.md and report.html from a run directory's stage outputs."""

from lmforge.report.build import write_report

__all__ = ["write_report"]

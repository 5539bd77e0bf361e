"""reports: a self-contained HTML report of a comparison results directory.

Reads the files described in docs/CONTRACTS.md (never trains) and writes ``report.html``
(figures embedded as PNG data URIs, CSS inline), ``summary.csv`` and ``summary.md``.
"""

from cellcompare.reports.build import ExternalResourceError, build_report, render_html
from cellcompare.reports.load import Results, ResultsError, load_results
from cellcompare.reports.sections import ReportOptions

__all__ = ["build_report", "render_html", "load_results", "Results", "ResultsError",
           "ReportOptions", "ExternalResourceError"]

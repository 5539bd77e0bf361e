"""reports: a self-contained HTML report of a comparison results directory.

Reads the files described in docs/CONTRACTS.md (never trains) and writes ``report.html``
(figures embedded as PNG data URIs, CSS inline), ``summary.csv`` and ``summary.md``.
"""

from cellcompare.lazy import lazy_exports

#: Imported on first use (``cellcompare.lazy``): the command line imports ``reports.cli``
#: without loading matplotlib and seaborn.
_EXPORTS = {"build_report": "build", "render_html": "build", "ExternalResourceError": "build",
            "load_results": "load", "Results": "load", "ResultsError": "load",
            "ReportOptions": "sections"}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

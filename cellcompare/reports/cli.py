"""``cellcompare report RESULTS_DIR [--pdf]``: the HTML report of a results folder (never trains)."""

from __future__ import annotations

import argparse
import sys


def _report(args: argparse.Namespace) -> int:
    # imported here: building the command line (e.g. for ``serve``) loads no plotting stack
    from cellcompare.reports.build import build_report
    from cellcompare.reports.load import ResultsError
    from cellcompare.reports.pdf import PdfError, print_pdf

    try:
        path = build_report(args.results_dir)
        print(path)
        if args.pdf:
            print(print_pdf(path))
    except (ResultsError, PdfError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``report`` to the ``cellcompare`` command line."""
    build = sub.add_parser("report", help="write report.html, summary.csv and summary.md")
    build.add_argument("results_dir", help="results directory written by a comparison run")
    build.add_argument("--pdf", action="store_true",
                       help="also print report.pdf with headless Chromium (for lab meetings)")
    build.set_defaults(func=_report)

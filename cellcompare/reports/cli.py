"""``cellcompare report RESULTS_DIR``: the HTML report of a results folder (never trains)."""

from __future__ import annotations

import argparse
import sys

from cellcompare.reports.build import build_report
from cellcompare.reports.load import ResultsError


def _report(args: argparse.Namespace) -> int:
    try:
        path = build_report(args.results_dir)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``report`` to the ``cellcompare`` command line."""
    build = sub.add_parser("report", help="write report.html, summary.csv and summary.md")
    build.add_argument("results_dir", help="results directory written by a comparison run")
    build.set_defaults(func=_report)

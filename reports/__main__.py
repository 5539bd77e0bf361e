"""Command line: ``python -m reports build RESULTS_DIR``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from reports.build import build_report
from reports.load import ResultsError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``reports`` command line; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m reports",
                                     description="Build the HTML comparison report.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="write report.html, summary.csv and summary.md")
    build.add_argument("results_dir", help="results directory written by comparison.run")
    build.add_argument("-v", "--verbose", action="store_true", help="log progress")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        path = build_report(args.results_dir)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

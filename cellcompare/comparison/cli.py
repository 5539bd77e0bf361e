"""``cellcompare compare [--config FILE] [--out DIR] [--weights PATH] [--pdf]``: every model on
identical folds, then the report.

Ends with a short results table (model, the metrics led by the run's primary one, time) above
the report's path, and the PDF's path with ``--pdf``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: What ``compare`` runs without ``--config``: the embedded demo, relative to the working folder.
DEMO_CONFIG_PATH = Path("configs") / "demo.yaml"


def _compare(args: argparse.Namespace) -> int:
    from cellcompare.comparison import load_config, run
    from cellcompare.comparison.config import with_weights
    from cellcompare.reports import load_results
    from cellcompare.reports.tables import terminal_table

    config = load_config(args.config, output=str(args.out) if args.out else None)
    if args.weights is not None:
        config = with_weights(config, args.weights)
    results = run(config)
    report = results / "report.html"
    print(terminal_table(load_results(results)))
    print()
    print(report if report.exists() else results)
    if args.pdf:
        from cellcompare.reports.pdf import PdfError, print_pdf

        if not report.exists():
            print(f"error: --pdf needs the HTML report, but {report} was not written "
                  "(report: false in the configuration?)", file=sys.stderr)
            return 2
        try:
            print(print_pdf(report))
        except PdfError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from cellcompare.comparison.fetch import fetch_cells

    fetched = fetch_cells(args.results, n=args.n, kind=args.kind, out=args.out,
                          crop_size=args.crop_size)
    print(fetched.csv)
    if fetched.sheet is not None:
        print(fetched.sheet)
    return 0


def add_commands(sub: argparse._SubParsersAction, *, default_config: Path = DEMO_CONFIG_PATH) -> None:
    """Add ``compare`` to a command line; ``default_config`` is read when ``--config`` is absent."""
    compare = sub.add_parser("compare", help="run the comparison described by a YAML config")
    compare.add_argument("--config", type=Path, default=default_config,
                         help=f"YAML configuration (default: {default_config}, the embedded demo)")
    compare.add_argument("--out", type=Path, default=None,
                         help="results directory (default: the configuration's output:)")
    compare.add_argument("--weights", type=Path, default=None, metavar="PATH",
                         help="ImageNet weights file for every resnet18 with weights: imagenet or "
                              "auto, instead of the torch hub cache (torchvision's "
                              "resnet18-<sha256 prefix>.pth, checked before any work)")
    compare.add_argument("--pdf", action="store_true",
                         help="also print report.pdf with headless Chromium (for lab meetings)")
    compare.set_defaults(func=_compare, log_level_default="INFO")
    from cellcompare.comparison.fetch import FETCH_KINDS

    fetch = sub.add_parser("fetch", help="the cells of a cell-task run to annotate next",
                           description="CellProfiler Analyst's fetch: score every cell of a "
                                       "labels.level: cell run with its best classical model and "
                                       "write the N cells to annotate next as a CSV (sample_id, "
                                       "x, y, label blank; fill in label and add the rows to "
                                       "labels.annotations) and a contact sheet of their crops.")
    fetch.add_argument("results", type=Path, help="results folder of a finished cell-task compare")
    fetch.add_argument("--n", type=int, default=50, help="cells to fetch")
    fetch.add_argument("--kind", choices=FETCH_KINDS, default="uncertain",
                       help="uncertain: smallest margin between the two likeliest classes; "
                            "positive: likeliest positive; random: a seeded uniform draw")
    fetch.add_argument("--out", type=Path, default=None, help="folder (default: RESULTS/fetch)")
    fetch.add_argument("--crop-size", type=int, default=48, help="side of each contact-sheet crop (px)")
    fetch.set_defaults(func=_fetch)

"""``cellcompare compare [--config FILE]``: every model on identical folds, then the report."""

from __future__ import annotations

import argparse
from pathlib import Path

#: What ``compare`` runs without ``--config``: the embedded demo, relative to the working folder.
DEMO_CONFIG_PATH = Path("configs") / "demo.yaml"


def _compare(args: argparse.Namespace) -> int:
    from cellcompare.comparison import load_config, run

    config = load_config(args.config, output=str(args.out) if args.out else None)
    results = run(config)
    report = results / "report.html"
    print(report if report.exists() else results)
    return 0


def add_commands(sub: argparse._SubParsersAction, *, default_config: Path = DEMO_CONFIG_PATH) -> None:
    """Add ``compare`` to a command line; ``default_config`` is read when ``--config`` is absent."""
    compare = sub.add_parser("compare", help="run the comparison described by a YAML config")
    compare.add_argument("--config", type=Path, default=default_config,
                         help=f"YAML configuration (default: {default_config}, the embedded demo)")
    compare.add_argument("--out", type=Path, default=None, help="results directory (overrides output:)")
    compare.set_defaults(func=_compare, log_level_default="INFO")

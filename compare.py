"""Compare CellProfiler features + SVM/XGBoost with ResNet18 on identical folds.

``python compare.py`` runs the embedded demo (a synthetic Cell Painting dataset written to
``demo_data/`` when absent); ``python compare.py --config configs/example.yaml`` runs yours.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from comparison import load_config, run


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the comparison, print the report (or results) path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML configuration (default: the embedded demo)")
    parser.add_argument("--out", type=Path, default=None, help="results directory (overrides output:)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(args.config, output=str(args.out) if args.out else None)
    results = run(config)
    report = results / "report.html"
    print(report if report.exists() else results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

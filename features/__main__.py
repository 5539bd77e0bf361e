"""``python -m features extract DATASET_DIR --out OUT_DIR [--preset P] [--jobs N] [--scheduler A]``."""

from __future__ import annotations

import argparse
import logging
import sys

from .batch import run_extraction
from .config import PRESETS, FeatureConfig


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the extraction; print the output folder."""
    parser = argparse.ArgumentParser(prog="python -m features")
    sub = parser.add_subparsers(dest="command", required=True)
    ext = sub.add_parser("extract", help="extract per-cell features of a dataset")
    ext.add_argument("dataset_dir")
    ext.add_argument("--out", required=True)
    ext.add_argument("--preset", default=None, choices=sorted(PRESETS))
    ext.add_argument("--config", default=None, help="YAML file of FeatureConfig fields")
    ext.add_argument("--jobs", type=int, default=1)
    ext.add_argument("--scheduler", default=None, help="Dask scheduler address")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = FeatureConfig.from_yaml(args.config) if args.config else FeatureConfig()
    if args.preset:
        config = FeatureConfig.from_dict({**config.to_dict(), "preset": args.preset})
    out = run_extraction(args.dataset_dir, args.out, config, jobs=args.jobs, scheduler=args.scheduler)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

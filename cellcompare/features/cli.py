"""``cellcompare extract DATASET_DIR --out OUT_DIR [--preset P] [--jobs N] [--scheduler A]``.

Dataset selection: ``[--layout L] [--include-class C ...] [--exclude-class C ...]
[--on-error {skip,raise}]`` (``--include-class`` / ``--exclude-class`` may be repeated).

``cellcompare compact OUT_DIR [--level {cell,image,both}] [--partition {plate,chunk}]``
rewrites an extraction's per-image parts as one partitioned Parquet dataset
(:func:`features.tables.compact`), which ``load_table`` and ``compare`` then read.
"""

from __future__ import annotations

import argparse
import dataclasses

from cellcompare.datasets.loader import LAYOUTS

from .batch import run_extraction
from .config import PRESETS, FeatureConfig
from .tables import compact


def _extract(args: argparse.Namespace) -> int:
    config = FeatureConfig.from_yaml(args.config) if args.config else FeatureConfig()
    if args.preset:
        config = dataclasses.replace(config, preset=args.preset)
    options = {"layout": args.layout, "include_classes": args.include_classes,
               "exclude_classes": args.exclude_classes, "on_error": args.on_error}
    out = run_extraction(args.dataset_dir, args.out, config, jobs=args.jobs, scheduler=args.scheduler,
                         dataset_options=options)
    print(out)
    return 0


def _compact(args: argparse.Namespace) -> int:
    levels = ("cell", "image") if args.level == "both" else (args.level,)
    for level in levels:
        print(compact(args.out_dir, level, partition=args.partition, chunk_images=args.chunk_images))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``extract`` and ``compact`` to the ``cellcompare`` command line."""
    ext = sub.add_parser("extract", help="segment and measure every image of a dataset (resumable)")
    ext.add_argument("dataset_dir", help="dataset folder (any layout open_dataset reads)")
    ext.add_argument("--out", required=True,
                     help="output folder (created; finished images found there are kept)")
    ext.add_argument("--preset", default=None, choices=sorted(PRESETS),
                     help="feature families (default: --config's, else standard)")
    ext.add_argument("--config", default=None, help="YAML file of FeatureConfig fields")
    ext.add_argument("--jobs", type=int, default=1, help="worker processes")
    ext.add_argument("--scheduler", default=None,
                     help="Dask scheduler address (tcp://host:8786) to run the images on instead "
                          "of local workers")
    ext.add_argument("--layout", default="auto", choices=LAYOUTS,
                     help="dataset layout; auto looks at the folder")
    ext.add_argument("--include-class", action="append", default=None, dest="include_classes",
                     metavar="CLASS", help="extract only this class (repeatable)")
    ext.add_argument("--exclude-class", action="append", default=[], dest="exclude_classes",
                     metavar="CLASS", help="leave this class out (repeatable)")
    ext.add_argument("--on-error", default="skip", choices=["skip", "raise"],
                     help="unreadable inputs: list them in errors.csv (skip) or stop (raise)")
    ext.set_defaults(func=_extract, log_level_default="INFO")
    com = sub.add_parser("compact", help="rewrite extract's per-image parts as one dataset")
    com.add_argument("out_dir", help="the --out folder of extract (or a compare run's features/)")
    com.add_argument("--level", default="both", choices=["cell", "image", "both"],
                     help="which tables to rewrite")
    com.add_argument("--partition", default="plate", choices=["plate", "chunk"],
                     help="one Parquet partition per plate, or per --chunk-images images")
    com.add_argument("--chunk-images", type=int, default=1000, help="images per chunk (--partition chunk)")
    com.set_defaults(func=_compact, log_level_default="INFO")

"""``cellcompare export RESULTS --to anndata [--out DIR] [--level image|cell] [--format h5ad|zarr]
[--predictions]``: the profiles of a comparison or an extraction as AnnData files."""

from __future__ import annotations

import argparse

from .anndata import FORMATS, LEVELS, export_anndata


def _export(args: argparse.Namespace) -> int:
    levels = tuple(args.level) if args.level else LEVELS
    for path in export_anndata(args.results, args.out, levels=levels, fmt=args.format,
                               predictions=args.predictions):
        print(path)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``export`` to the ``cellcompare`` command line."""
    export = sub.add_parser("export", help="write per-image and per-cell profiles as AnnData")
    export.add_argument("results", help="a comparison's output folder, or an extraction folder")
    export.add_argument("--to", choices=("anndata",), default="anndata", help="target form")
    export.add_argument("--out", default=None, help="folder of the files (default RESULTS/anndata)")
    export.add_argument("--level", action="append", choices=LEVELS, default=None,
                        help="table to write, repeatable (default: both)")
    export.add_argument("--format", choices=FORMATS, default="h5ad", help="file format")
    export.add_argument("--predictions", action="store_true",
                        help="add the comparison's out-of-fold predictions to obs")
    export.set_defaults(func=_export)

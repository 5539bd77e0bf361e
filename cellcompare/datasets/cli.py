"""``cellcompare synth`` (write a synthetic dataset), ``convert`` (TIFF to PNG) and ``summary``."""

from __future__ import annotations

import argparse

from .convert import convert_dataset
from .explore import write_summary
from .loader import LAYOUTS, open_dataset
from .synth import make_cellpainting, make_stages


def _size(text: str) -> tuple[int, ...]:
    parts = tuple(int(p) for p in text.lower().replace(",", "x").split("x"))
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"size must be N or HxW, got {text!r}")
    return parts


def _synth(args: argparse.Namespace) -> int:
    options = {k: v for k, v in {"classes": args.classes, "per_class": args.per_class}.items() if v is not None}
    if args.kind == "cellpainting":
        size = args.size[0] if args.size else 512
        out = make_cellpainting(args.out, seed=args.seed, size=size, plates=args.plates,
                                sites_per_well=args.sites_per_well,
                                controls_per_plate=args.controls, **options)
    else:
        size = (args.size * 2)[:2] if args.size else (420, 1110)
        out = make_stages(args.out, seed=args.seed, size=size, **options)
    print(out)
    return 0


def _convert(args: argparse.Namespace) -> int:
    report = convert_dataset(args.src, args.out, to=args.to, split_channels=args.split_channels,
                             overwrite=args.overwrite, layout=args.layout)
    if args.to == "omezarr":
        print(f"{args.out}: {len(report.converted)} OME-Zarr plates written ({', '.join(report.converted)})")
        return 0
    print(f"{args.out}: {len(report.converted)} PNG written, {len(report.kept)} kept from an "
          f"earlier run, {len(report.copied)} files copied, {len(report.rewritten_csv)} CSV rewritten")
    return 0


def _summary(args: argparse.Namespace) -> int:
    options = {"group_pattern": args.group_pattern} if args.group_pattern else {}
    dataset = open_dataset(args.root, args.layout, on_error=args.on_error, **options)
    print(write_summary(dataset, args.out, plots=not args.no_plots))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``synth`` and ``summary`` to the ``cellcompare`` command line."""
    synth = sub.add_parser("synth", help="write a synthetic dataset in a real layout")
    synth.add_argument("--kind", choices=("cellpainting", "stages"), required=True,
                       help="cellpainting: 6-channel sites in the RxRx1 layout; stages: "
                            "single-object grayscale images in class folders")
    synth.add_argument("--out", required=True, help="folder to write (created)")
    synth.add_argument("--classes", type=int, default=None,
                       help="number of classes (default: the generator's, 4 cellpainting, 5 stages)")
    synth.add_argument("--per-class", type=int, default=None,
                       help="images per class (default: the generator's, 8 cellpainting, 10 stages)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (same seed, same images)")
    synth.add_argument("--size", type=_size, default=None,
                       help="N (cellpainting, default 512) or HxW (stages, default 420x1110)")
    synth.add_argument("--plates", type=int, default=3, help="cellpainting plates")
    synth.add_argument("--sites-per-well", type=int, default=1, help="cellpainting sites per well")
    synth.add_argument("--controls", type=int, default=0,
                       help="cellpainting negative-control wells (label EMPTY) per plate")
    synth.set_defaults(func=_synth)
    convert = sub.add_parser("convert", help="copy a dataset as PNGs (bit depth kept) or "
                             "OME-Zarr plates")
    convert.add_argument("src", help="dataset folder")
    convert.add_argument("--out", required=True, help="output folder (created)")
    convert.add_argument("--to", choices=("png", "omezarr"), default="png",
                         help="png: the folder with its TIFFs as PNG; omezarr: OME-Zarr HCS plates")
    convert.add_argument("--layout", default="auto", choices=LAYOUTS, help="layout of src (omezarr)")
    convert.add_argument("--split-channels", action="store_true",
                         help="one PNG per channel for multi-channel TIFFs (_c1, _c2, ...)")
    convert.add_argument("--overwrite", action="store_true", help="redo files already converted")
    convert.set_defaults(func=_convert)
    summary = sub.add_parser("summary", help="tables and plots describing a dataset")
    summary.add_argument("root", help="dataset folder (any layout open_dataset reads)")
    summary.add_argument("--out", required=True, help="folder for the tables and plots (created)")
    summary.add_argument("--layout", default="auto", choices=LAYOUTS,
                         help="dataset layout; auto looks at the folder")
    summary.add_argument("--on-error", default="skip", choices=("raise", "skip"),
                         help="unreadable images: list them as skipped (skip) or stop (raise)")
    summary.add_argument("--group-pattern", default=None,
                         help="regular expression whose (first) group in a file name is its group "
                              "(class folders, channel sets)")
    summary.add_argument("--no-plots", action="store_true", help="tables only")
    summary.set_defaults(func=_summary)

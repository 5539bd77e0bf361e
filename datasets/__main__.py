"""Command line: ``python -m datasets synth ...`` and ``python -m datasets summary DIR --out OUT``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .explore import write_summary
from .loader import open_dataset
from .synth import make_cellpainting, make_stages


def _size(text: str) -> tuple[int, ...]:
    parts = tuple(int(p) for p in text.lower().replace(",", "x").split("x"))
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"size must be N or HxW, got {text!r}")
    return parts


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the ``datasets`` command."""
    parser = argparse.ArgumentParser(prog="python -m datasets", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    synth = sub.add_parser("synth", help="write a synthetic dataset")
    synth.add_argument("--kind", choices=("cellpainting", "stages"), required=True)
    synth.add_argument("--out", required=True)
    synth.add_argument("--classes", type=int, default=None)
    synth.add_argument("--per-class", type=int, default=None)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--size", type=_size, default=None, help="N (cellpainting) or HxW (stages)")
    synth.add_argument("--plates", type=int, default=3, help="cellpainting plates")
    synth.add_argument("--sites-per-well", type=int, default=1)
    summary = sub.add_parser("summary", help="tables and plots describing a dataset")
    summary.add_argument("root")
    summary.add_argument("--out", required=True)
    summary.add_argument("--layout", default="auto", choices=("auto", "rxrx1", "folders", "channelsets"))
    summary.add_argument("--on-error", default="skip", choices=("raise", "skip"))
    summary.add_argument("--group-pattern", default=None)
    summary.add_argument("--no-plots", action="store_true")
    return parser


def _synth(args: argparse.Namespace) -> str:
    options = {k: v for k, v in {"classes": args.classes, "per_class": args.per_class}.items() if v is not None}
    if args.kind == "cellpainting":
        size = args.size[0] if args.size else 512
        out = make_cellpainting(args.out, seed=args.seed, size=size, plates=args.plates,
                                sites_per_well=args.sites_per_well, **options)
    else:
        size = (args.size * 2)[:2] if args.size else (420, 1110)
        out = make_stages(args.out, seed=args.seed, size=size, **options)
    return str(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command == "synth":
        print(_synth(args))
        return 0
    options = {"group_pattern": args.group_pattern} if args.group_pattern else {}
    dataset = open_dataset(args.root, args.layout, on_error=args.on_error, **options)
    print(write_summary(dataset, args.out, plots=not args.no_plots))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``cellcompare predict``, ``cellcompare undo`` and ``cellcompare serve`` (the HTTP endpoint)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cellcompare.serve.normalization import MIN_PLATE_IMAGES


def _predict(args: argparse.Namespace) -> int:
    from cellcompare.serve.predict import predict_inputs, write_csv
    from cellcompare.serve.predictor import load_predictor
    from cellcompare.serve.rename import apply_renames, plan_renames
    rows = predict_inputs(load_predictor(args.model_dir), args.inputs, k=args.top,
                          group=args.group, min_plate_images=args.min_plate_images)
    out = write_csv(rows, args.out, args.top)
    print(out)
    failed = sum(1 for row in rows if row.error)
    if failed == len(rows):  # nothing predicted: not a success
        logging.getLogger("cellcompare.serve").error("every input (%d) failed; see %s", failed, out)
        return 1
    if not args.rename:
        return 0
    plan = plan_renames(rows, channel_files=args.rename_channel_files)
    for old, new in plan:
        print(f"{old} -> {new.name}")
    if not plan:
        return 0
    go = args.yes or (sys.stdin.isatty()
                      and input(f"rename {len(plan)} files? [y/N] ").strip().lower() == "y")
    if not go:
        print("dry run; pass --yes to rename")
        return 0
    manifest = args.manifest or Path(args.out).with_suffix(".undo.json")
    print(apply_renames(plan, manifest))
    return 0


def _undo(args: argparse.Namespace) -> int:
    from cellcompare.serve.rename import undo
    restored, problems = undo(args.manifest)
    for p in problems:
        logging.getLogger("cellcompare.serve").warning(p)
    print(f"restored {restored} file name(s)")
    return 1 if problems else 0


def _http(args: argparse.Namespace) -> int:
    import uvicorn

    from cellcompare.serve.access import check_binding, load_token
    from cellcompare.serve.app import create_app
    token = load_token(args.token_file)
    check_binding(args.host, token, args.insecure)
    limits = {k: v for k, v in (("max_pixels", args.max_pixels), ("max_files", args.max_files))
              if v is not None}
    app = create_app(args.model_dir, max_bytes=args.max_mb * 2**20, k=args.top,
                     workers=args.workers, token=token, docs=args.docs, device=args.device,
                     min_plate_images=args.min_plate_images, **limits)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``predict``, ``undo`` and ``serve`` to the ``cellcompare`` command line."""
    p = sub.add_parser("predict", help="top-k CSV (and optional renaming) for images")
    p.add_argument("model_dir")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--out", default="predictions.csv")
    p.add_argument("--rename", action="store_true")
    p.add_argument("--rename-channel-files", action="store_true",
                   help="also rename images made of one file per channel, each file alike")
    p.add_argument("--yes", action="store_true")
    p.add_argument("--manifest", default=None)
    p.add_argument("--group", default=None,
                   help="plate of the image files given (a dataset folder's images keep theirs); "
                        "its images are normalised together")
    p.add_argument("--min-plate-images", type=int, default=MIN_PLATE_IMAGES,
                   help="fewest images of an unseen plate normalised by their own statistics "
                        f"(default {MIN_PLATE_IMAGES}); fewer use the training reference")
    p.set_defaults(func=_predict)
    u = sub.add_parser("undo", help="restore names from an undo manifest")
    u.add_argument("manifest")
    u.set_defaults(func=_undo)
    h = sub.add_parser("serve", help="serve a model over HTTP (POST /predict)")
    h.add_argument("model_dir")
    h.add_argument("--host", default="127.0.0.1")
    h.add_argument("--port", type=int, default=8000)
    h.add_argument("--max-mb", type=int, default=64)
    h.add_argument("--top", type=int, default=3)
    h.add_argument("--max-pixels", type=int, default=None,
                   help="largest upload in pixel values (C x H x W), checked from its header "
                        "(default 4096 x 4096)")
    h.add_argument("--workers", type=int, default=None,
                   help="predictions at once (default: CPU cores); more requests get 503")
    h.add_argument("--token-file", default=None,
                   help="file holding the bearer token every route but /health requires "
                        "(default: $CELLCOMPARE_TOKEN; none: no token)")
    h.add_argument("--insecure", action="store_true",
                   help="allow listening beyond 127.0.0.1 without a token")
    h.add_argument("--docs", action="store_true", help="serve /docs and /openapi.json")
    h.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"),
                   help="where a deep model runs (default cpu; a GPU image: cuda)")
    h.add_argument("--max-files", type=int, default=None,
                   help="most files of one POST /predict/batch (default 1024); more get 413")
    h.add_argument("--min-plate-images", type=int, default=MIN_PLATE_IMAGES,
                   help="fewest images of an unseen plate in a batch normalised by their own "
                        f"statistics (default {MIN_PLATE_IMAGES})")
    h.set_defaults(func=_http)

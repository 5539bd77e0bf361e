"""``cellcompare predict``, ``score``, ``undo`` and ``serve`` (the HTTP endpoint)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cellcompare.serve.normalization import MIN_PLATE_IMAGES

log = logging.getLogger("cellcompare.serve")
#: Exit status of ``predict`` when no input could be predicted (bad input, as ``cli.main``'s 2).
ALL_FAILED = 2


def _predict(args: argparse.Namespace) -> int:
    from cellcompare.serve.predict import predict_inputs, write_csv
    from cellcompare.serve.predictor import load_predictor
    from cellcompare.serve.rename import apply_renames, plan_renames
    rows = predict_inputs(load_predictor(args.model_dir), args.inputs, k=args.top,
                          group=args.group, min_plate_images=args.min_plate_images)
    out = write_csv(rows, args.out, args.top)
    print(out)
    failed = [row.error for row in rows if row.error]
    if len(failed) == len(rows):
        log.error("none of the %d inputs could be predicted (reasons in %s); the first: %s. A "
                  "folder of one file per channel is read as one image per set when the files "
                  "are named like {name}_w1.png ... {name}_w6.png", len(rows), out,
                  failed[0] if failed else "no image found")
        return ALL_FAILED
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


def _score(args: argparse.Namespace) -> int:
    from cellcompare.datasets.config import DatasetConfig
    from cellcompare.serve.predictor import load_predictor
    from cellcompare.serve.score import score_dataset
    if args.dataset_config is not None:
        section = DatasetConfig.from_yaml(args.dataset_config)
        options = {**section.open_options(), "layout": args.layout or section.layout}
    else:
        options = {"layout": args.layout or "auto"}
    options.update(unlabelled="keep", on_error="skip")  # new images: no labels, bad files logged
    from cellcompare.datasets import open_dataset
    dataset = open_dataset(args.dataset, **options)
    out = Path(args.out) if args.out else Path("scores")
    scored = score_dataset(load_predictor(args.model_dir, device=args.device), dataset, out,
                           min_plate_images=args.min_plate_images)
    for path in scored.files.values():
        print(path)
    if scored.n_failed == scored.n_images:
        log.error("none of the %d images could be scored (reasons in %s)", scored.n_images,
                  scored.files["images"])
        return ALL_FAILED
    return 0


def _undo(args: argparse.Namespace) -> int:
    from cellcompare.serve.rename import undo
    done = undo(args.manifest)
    for p in done.problems:
        log.warning(p)
    already = f"; {done.already} already restored" if done.already else ""
    print(f"restored {done.restored} file name(s){already}")
    return 1 if done.problems else 0


def _http(args: argparse.Namespace) -> int:
    import socket

    import uvicorn

    from cellcompare.serve.access import check_binding, load_token
    from cellcompare.serve.app import create_app
    from cellcompare.serve.model_dir import read_spec
    read_spec(args.model_dir)  # a missing or broken MODEL_DIR: its message, not a server traceback
    token = load_token(args.token_file)
    check_binding(args.host, token, args.insecure)
    limits = {k: v for k, v in (("max_pixels", args.max_pixels), ("max_files", args.max_files))
              if v is not None}
    app = create_app(args.model_dir, max_bytes=args.max_mb * 2**20, k=args.top,
                     workers=args.workers, token=token, docs=args.docs, device=args.device,
                     min_plate_images=args.min_plate_images, **limits)
    # bound here, so that the line says the address really listened on (also for --port 0)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)  # uvicorn's backlog; a client connecting now waits until the model is loaded
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    log.info("serving %s on http://%s:%d (POST /predict with the image as multipart field "
             "'file'; POST /predict/batch with fields 'files' and 'group'; GET /health, /model)",
             args.model_dir, shown, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``predict``, ``score``, ``undo`` and ``serve`` to the ``cellcompare`` command line."""
    p = sub.add_parser("predict", help="top-k CSV (and optional renaming) for images",
                       description="Predict the classes of images with a model exported by "
                                   "compare (export_models:). INPUTS are image files, globs or "
                                   "folders: a folder holds one image per file (a multi-channel "
                                   "TIFF with the model's channels), one file per channel "
                                   "({name}_w1.png ... {name}_w6.png, read as one image per "
                                   "name), or a dataset in a layout compare reads.")
    p.add_argument("model_dir", help="a model folder (serve.json) from a run's models/{label}/")
    p.add_argument("inputs", nargs="+", help="image files, globs or folders")
    p.add_argument("--top", type=int, default=3, help="classes per image in the CSV")
    p.add_argument("--out", default="predictions.csv", help="CSV to write")
    p.add_argument("--rename", action="store_true",
                   help="append the top classes to each file name; a dry run unless --yes")
    p.add_argument("--rename-channel-files", action="store_true",
                   help="also rename images made of one file per channel, each file alike")
    p.add_argument("--yes", action="store_true", help="apply --rename without asking")
    p.add_argument("--manifest", default=None,
                   help="undo manifest of the renaming (default: --out with .undo.json)")
    p.add_argument("--group", default=None,
                   help="plate of the image files given (a dataset folder's images keep theirs); "
                        "its images are normalised together")
    p.add_argument("--min-plate-images", type=int, default=MIN_PLATE_IMAGES,
                   help="fewest images of an unseen plate normalised by their own statistics "
                        f"(default {MIN_PLATE_IMAGES}); fewer use the training reference")
    p.set_defaults(func=_predict)
    c = sub.add_parser("score", help="score every cell of a dataset with an exported cell model",
                       description="Apply a cell model exported by compare (labels.level: cell, "
                                   "export_models:) to every cell of the images of DATASET, a "
                                   "plate at a time. Writes cells.parquet (each cell's class and "
                                   "probabilities), images.csv (cells of each class and their "
                                   "fractions per image), and, where the layout names wells, "
                                   "wells.csv and a heat map per plate of the positive fraction.")
    c.add_argument("model_dir", help="a cell model folder (serve.json) from a run's models/{label}/")
    c.add_argument("dataset", help="dataset folder in any layout compare reads")
    c.add_argument("--layout", default=None, help="dataset layout (default: auto, or the "
                                                  "--dataset-config's)")
    c.add_argument("--dataset-config", type=Path, default=None,
                   help="YAML with a dataset: section (layout, options such as channel_names)")
    c.add_argument("--out", default=None, help="folder to write (default: ./scores)")
    c.add_argument("--device", default="cpu", help="where a deep model runs: cpu, cuda or auto")
    c.add_argument("--min-plate-images", type=int, default=MIN_PLATE_IMAGES,
                   help="fewest images of an unseen plate normalised by their own statistics")
    c.set_defaults(func=_score)
    u = sub.add_parser("undo", help="restore names from an undo manifest")
    u.add_argument("manifest", help="the .undo.json written by predict --rename --yes")
    u.set_defaults(func=_undo)
    h = sub.add_parser("serve", help="serve a model over HTTP (POST /predict)",
                       description="Serve a model exported by compare over HTTP: POST /predict "
                                   "with the image as the multipart form field 'file' (optional "
                                   "query ?top=K) answers its top-k classes as JSON; POST "
                                   "/predict/batch with several 'files' (one plate, optional "
                                   "'group') answers each; GET /health, GET /model.")
    h.add_argument("model_dir", help="a model folder (serve.json) from a run's models/{label}/")
    h.add_argument("--host", default="127.0.0.1", help="address to listen on")
    h.add_argument("--port", type=int, default=8000, help="TCP port to listen on; 0 picks a free one")
    h.add_argument("--max-mb", type=int, default=64, help="largest request body in MiB (413 above)")
    h.add_argument("--top", type=int, default=3, help="classes per answer unless ?top= asks")
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
    h.set_defaults(func=_http, log_level_default="INFO")

"""Offline prediction: expand inputs, predict each image, write a top-k CSV."""

from __future__ import annotations

import csv
import glob
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from cellcompare.progress import progress_bar
from cellcompare.serve.normalization import MIN_PLATE_IMAGES
from cellcompare.serve.predictor import Outcome, Predictor, top_pairs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictionRow:
    """One image's result: its path, top-k ``(class, probability)`` and an error message.

    ``files`` are the absolute paths of the files the image was actually read from (one per
    channel file); renaming acts on these and on nothing else. ``normalization`` says which
    statistics normalised it (``serve.normalization.Normalization.describe``).
    """

    path: str
    top: tuple[tuple[str, float], ...] = ()
    error: str = ""
    files: tuple[str, ...] = ()
    normalization: str = ""


def _is_image(path: Path) -> bool:
    from cellcompare.datasets.imageio import is_image_file
    return path.is_file() and is_image_file(path)


def read_file_sample(path: str | Path) -> Any:
    """Read one image file directly into a :class:`datasets.Sample` (id = file stem)."""
    from cellcompare.datasets import Sample
    from cellcompare.datasets.imageio import read_image
    path = Path(path)
    return Sample(id=path.stem, image=read_image(path), paths=(str(path),))


def _channel_files(folder: Path) -> bool:
    """Whether the images at the top of ``folder`` are one file per channel (a file-name
    preset such as ``{well}_s{site}_w{channel}``, or sets ``name_D.tif, name_F.tif``), to be
    read as one multi-channel image per set, as ``datasets.open_dataset`` reads them."""
    from cellcompare.datasets.errors import LayoutError
    from cellcompare.datasets.loader import detect_layout

    try:
        return detect_layout(folder) in ("pattern", "channelsets")
    except LayoutError:
        return False


def _folder_items(folder: Path) -> Iterator[tuple[str, Any]]:
    flat = sorted(p for p in folder.iterdir() if _is_image(p))
    if flat and not _channel_files(folder):
        yield from ((str(p), p) for p in flat)
        return
    from cellcompare.datasets import open_dataset
    try:
        ds = open_dataset(folder, on_error="skip")
    except ValueError as exc:  # no readable layout: one error row for the folder
        yield str(folder), exc
        return
    for rec in ds.skipped:
        yield rec.path, ValueError(rec.reason)
    for i in range(len(ds)):
        yield str(ds.index.iloc[i].get("path", ds.ids[i])), (ds, i)


def expand_inputs(inputs: Sequence[str]) -> list[tuple[str, Any]]:
    """Turn files, folders and globs into ``(display_path, source)`` items.

    A file is one image. A folder is one of: image files, each one image; one file per
    channel (``B02_s1_w1.png ... B02_s1_w6.png``, or ``name_D.tif, name_F.tif``), each set
    one image; or a dataset in any layout ``datasets.open_dataset`` reads (class folders,
    RxRx1, ...). ``source`` is a file Path, a ``(dataset, index)`` pair or an exception (a
    skipped input).
    """
    items: list[tuple[str, Any]] = []
    for raw in inputs:
        matches = sorted(glob.glob(raw, recursive=True)) if glob.has_magic(raw) else [raw]
        if not matches:
            items.append((raw, FileNotFoundError(f"no file matches {raw!r}")))
        for m in matches:
            p = Path(m)
            if p.is_dir():
                items.extend(_folder_items(p))
            elif p.exists():
                items.append((str(p), p))
            else:
                items.append((m, FileNotFoundError(f"{m} does not exist")))
    return items


def _load(source: Any) -> Any:
    if isinstance(source, Exception):
        raise source
    if isinstance(source, Path):
        return read_file_sample(source)
    ds, i = source
    sample = ds[i]
    return sample


#: Failing inputs logged one by one; the others are in the rows (the CSV's error column).
LOGGED_FAILURES = 5


def _plate_of(source: Any, group: str | None, groups: dict[int, np.ndarray]) -> str | None:
    """A dataset image's own plate; an image file's is ``group``."""
    if isinstance(source, Path):
        return group
    ds, i = source
    if id(ds) not in groups:
        groups[id(ds)] = ds.groups
    plate = groups[id(ds)][i]
    return None if plate is None or (isinstance(plate, float) and np.isnan(plate)) else str(plate)


def predict_inputs(predictor: Predictor, inputs: Sequence[str], *, k: int = 3,
                   group: str | None = None,
                   min_plate_images: int = MIN_PLATE_IMAGES) -> list[PredictionRow]:
    """Predict every image of ``inputs``, a plate at a time; a failing image yields a row with
    ``error`` set.

    The images of one plate (a dataset folder's ``group``; for image files, ``group``) go to
    the model as one batch, so a group-normalised model uses that plate's statistics as the
    comparison did (``serve.normalization``); images without a plate use the reference
    statistics stored with the model. Images are read one at a time. The first
    :data:`LOGGED_FAILURES` failures are logged; every failure is in its row.
    """
    items = expand_inputs(inputs)
    rows: list[PredictionRow | None] = [None] * len(items)
    plates: dict[str | None, list[int]] = {}
    groups: dict[int, np.ndarray] = {}
    for position, (path, source) in enumerate(items):
        if isinstance(source, Exception):
            rows[position] = PredictionRow(path, error=f"{type(source).__name__}: {source}")
        else:
            plates.setdefault(_plate_of(source, group, groups), []).append(position)
    with progress_bar(total=sum(map(len, plates.values())), desc="predict", unit="img",
                      leave=False) as bar:
        def loader(source: Any):
            def load():
                bar.update()
                return _load(source)
            return load

        for plate, members in plates.items():
            batch = [(items[i][0], loader(items[i][1])) for i in members]
            outcomes = predictor.predict_batch(batch, group=plate, min_plate_images=min_plate_images)
            for i, outcome in zip(members, outcomes):
                rows[i] = _row(items[i][0], outcome, predictor.classes, k)
    failed = [row for row in rows if row.error]
    for row in failed[:LOGGED_FAILURES]:
        logger.warning("cannot predict %s: %s", row.path, row.error)
    if len(failed) > LOGGED_FAILURES:
        logger.warning("%d more inputs could not be predicted; every reason is in the error "
                       "column", len(failed) - LOGGED_FAILURES)
    return rows


def _row(path: str, outcome: Outcome, classes: Sequence[str], k: int) -> PredictionRow:
    if outcome.paths and len(outcome.paths) == 1:
        path = outcome.paths[0]
    if outcome.error is not None:
        return PredictionRow(path, error=f"{type(outcome.error).__name__}: {outcome.error}")
    files = tuple(str(Path(p).absolute()) for p in outcome.paths)
    top = tuple(top_pairs(classes, outcome.proba[None], k)[0])
    return PredictionRow(path, top, files=files, normalization=outcome.normalization.describe())


def write_csv(rows: Sequence[PredictionRow], out: str | Path, k: int) -> Path:
    """Write ``path, top1_class, top1_proba, ..., error, normalization`` (one row per image)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tops = [f"top{i}_{x}" for i in range(1, k + 1) for x in ("class", "proba")]
    header = ["path", *tops, "error", "normalization"]
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            cells: list[Any] = [row.path]
            for i in range(k):
                cells += [row.top[i][0], f"{row.top[i][1]:.6f}"] if i < len(row.top) else ["", ""]
            writer.writerow(cells + [row.error, row.normalization])
    return out

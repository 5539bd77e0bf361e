"""The resumable batch job: images staged one by one, written as shards of many images.

Layout of ``out_dir``: ``cells/shard-{a:06d}-{b:06d}.parquet`` and ``image/shard-...parquet``
per range of ``shard_images`` ImageNumbers (:mod:`.shards`), ``manifest.json``, ``errors.csv``
and ``qc/{sample_id}.npz``; ``staged/`` holds finished images waiting for their shard. Workers
open the dataset themselves (with the same ``dataset_options``), read one image each and
stage it atomically, so memory stays bounded by ``jobs`` images and a killed job loses at most
the images in flight. The main process writes a shard as soon as every image of its range is
finished (or failed), and is the only writer of shards: it holds ``out_dir/.lock`` (:mod:`.lock`)
and a second extraction into the folder is refused. Each shard records the files its images
were computed from (:mod:`.resume`), so a restart keeps the shards of unchanged images,
renumbers those whose position moved, redoes damaged shards, and extracts exactly the images
that are new or changed. An error in one image (even MemoryError) goes to ``errors.csv`` and
the batch goes on (the image is tried again on the next run); workers exit when the main
process dies. ``manifest.json`` records the dataset options and the storage; resuming into a
folder made with options that select other images, or other feature settings, is refused.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import platform
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
from joblib import Parallel, delayed

from cellcompare import atomic
from cellcompare.atomic import atomic_path
from cellcompare.provenance import package_versions
from cellcompare.progress import progress_bar

from .config import FeatureConfig
from .conventions import RECORDED_BEFORE
from .extract import extract_sample, sample_segmentation
from .plan import plan_extraction
from . import shards
from .lock import folder_lock
from .resume import assemble_range, reconcile, source_key

if TYPE_CHECKING:  # the bar's type, for the annotation only
    from tqdm import tqdm

log = logging.getLogger(__name__)
PACKAGES = ("numpy", "scipy", "scikit-image", "pandas", "pyarrow", "cp-measure", "joblib")
#: ``open_dataset`` arguments used when ``dataset_options`` leaves them out.
DEFAULT_DATASET_OPTIONS = {"layout": "auto", "include_classes": None, "exclude_classes": [],
                           "on_error": "skip"}
#: Options that never change which images are selected (``unlabelled`` only when not "drop").
_SELECTION_NEUTRAL = {"on_error": None, "unlabelled": ("keep", "raise", None)}


class DatasetOptionsMismatchError(ValueError):
    """``out_dir`` holds parts extracted with dataset options that select other images."""


class FeatureConfigMismatchError(ValueError):
    """``out_dir`` holds parts extracted with other feature settings (tables would mix)."""


def normalize_dataset_options(options: dict | None) -> dict:
    """Return ``options`` as plain JSON values, sorted class lists, defaults left out.

    Parameters
    ----------
    options : dict or None
        Keyword arguments of :func:`datasets.open_dataset` (``layout``, ``include_classes``,
        ``exclude_classes``, ``on_error`` and reader options).

    Returns
    -------
    dict
        Sorted keys; entries equal to :data:`DEFAULT_DATASET_OPTIONS` dropped, so ``None``,
        ``{}`` and the explicit defaults compare equal (and equal to manifests written before
        the options were recorded).
    """
    out = json.loads(json.dumps(dict(options or {}), default=str))
    for key in ("include_classes", "exclude_classes"):
        if out.get(key) is not None:
            out[key] = sorted(map(str, out[key]))
    return {k: out[k] for k in sorted(out) if k not in DEFAULT_DATASET_OPTIONS
            or out[k] != DEFAULT_DATASET_OPTIONS[k]}


def dataset_options_conflict(saved: dict | None, wanted: dict | None) -> list[str]:
    """Option keys whose values differ in a way that selects or orders other images.

    ``on_error`` is ignored: a dataset that opens under ``"raise"`` indexes the same images as
    under ``"skip"``, so changing it never mixes parts of different images. ``unlabelled``
    matters only when one side drops unlabelled samples.
    """
    a, b = normalize_dataset_options(saved), normalize_dataset_options(wanted)

    def differs(key: str) -> bool:
        neutral = _SELECTION_NEUTRAL.get(key, ())
        if neutral is None:
            return False
        return a.get(key) != b.get(key) and not (a.get(key) in neutral and b.get(key) in neutral)

    return sorted(k for k in set(a) | set(b) if differs(k))


def _stage(df: pd.DataFrame, out: Path, level: str, source: dict, dtype: str) -> None:
    table = shards.storage_table(pa.Table.from_pandas(df, preserve_index=False), dtype)
    shards.stage(table, out, level, source_key(source))


def _exit_with_parent(parent_pid: int, interval: float = 0.5) -> None:
    """In a worker process, exit as soon as ``parent_pid`` is no longer the parent.

    A SIGKILL to the main process runs none of its clean-up, so joblib cannot stop its
    workers; each worker therefore watches its own parent and leaves when it is gone.
    """
    if os.getpid() == parent_pid or _exit_with_parent.started:
        return
    if os.getppid() != parent_pid:          # the parent died while this worker was starting
        os._exit(70)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(70)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
    _exit_with_parent.started = True


_exit_with_parent.started = False


_OPENED: dict[tuple[str, str, str], object] = {}


def _open(dataset_dir: str, options_json: str = "{}", version: str = ""):
    """Open a dataset once per process (probing headers is not free); the last two are kept.

    ``options_json`` is the normalized ``dataset_options`` as JSON (hashable for the cache).
    ``version`` is a digest of the dataset's sources as the main process saw them, so a worker
    reused by a later run (loky keeps its workers) reopens a dataset that changed meanwhile.
    """
    from cellcompare.datasets import open_dataset

    key = (dataset_dir, options_json, version)
    if key not in _OPENED:
        ds = open_dataset(dataset_dir, **{**DEFAULT_DATASET_OPTIONS, **json.loads(options_json)})
        _remember(key, ds)
    return _OPENED[key]


def _remember(key: tuple[str, str, str], ds) -> None:
    """Keep ``ds`` under ``key`` (the main process hands its fresh view to in-process jobs)."""
    _OPENED.pop(key, None)
    _OPENED[key] = ds
    while len(_OPENED) > 2:
        _OPENED.pop(next(iter(_OPENED)))


def process_one(dataset_dir: str, out_dir: str, index: int, config: FeatureConfig,
                write_qc: bool, dataset_options: dict | None = None,
                parent_pid: int | None = None, version: str = "") -> tuple[int, dict | None]:
    """Extract image ``index`` of the dataset and stage it; return ``(index, error record or None)``.

    Any exception of this one image (a decoder's, a MemoryError) becomes the error record, so
    one bad image never stops the batch; a full disk does stop it (:class:`shards.DiskFullError`).
    """
    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    out = Path(out_dir)
    ds = _open(dataset_dir, json.dumps(normalize_dataset_options(dataset_options)), version)
    sid = str(ds.ids[index])
    path = ds.paths_of(index)[0] if ds.paths_of(index) else ""
    try:
        source = ds.source(index)
        sample = ds[index]
        found = sample_segmentation(sample, config, root=ds.root)
        cells, row = extract_sample(sample, config, image_number=index + 1, masks=found)
        masks = found.masks
    except Exception as exc:  # noqa: BLE001 - one image's failure, whatever it is, is recorded
        log.warning("image %s (%s) failed: %s: %s", sid, path, type(exc).__name__, exc)
        return index, {"sample_id": sid, "path": path, "reason": f"{type(exc).__name__}: {exc}"}
    if write_qc:
        (out / "qc").mkdir(exist_ok=True)
        qc = {"nuclei": masks.get("Nuclei", masks["Cells"]), "cells": masks["Cells"]}
        with atomic_path(out / "qc" / f"{sid}.npz") as tmp, tmp.open("wb") as fh:
            np.savez_compressed(fh, **qc)
    _stage(cells, out, "cells", source, config.dtype)   # cells first: the image file marks it done
    _stage(row, out, "image", source, config.dtype)
    if len(cells) == 0:
        return index, {"sample_id": sid, "path": path, "reason": "zero objects segmented"}
    return index, None


def _versions() -> dict[str, str]:
    return {"python": platform.python_version(), **package_versions(PACKAGES, missing="absent")}


def config_conflict(saved: dict | None, wanted: dict) -> list[str]:
    """Feature-config keys whose values differ between a manifest and ``wanted`` (JSON-compared)."""
    saved = saved or {}
    wanted = json.loads(json.dumps(wanted, default=str))
    if saved and "conventions" not in saved and "conventions" in wanted:  # written before the key
        saved = {**saved, "conventions": RECORDED_BEFORE}
    return sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))


def _check_resume(out: Path, options: dict, config: FeatureConfig) -> None:
    """Refuse to add parts to a folder whose finished parts come from other options or settings."""
    path = out / "manifest.json"
    if not path.is_file() or not (shards.shard_files(out) or any((out / shards.STAGE).glob("*.arrow"))):
        return
    manifest = json.loads(path.read_text())
    saved = manifest.get("dataset_options", {})
    differ = dataset_options_conflict(saved, options)
    if differ:
        raise DatasetOptionsMismatchError(
            f"{out} holds features extracted with other dataset options (keys {differ} differ: "
            f"manifest.json has {saved}, asked for {options}); image numbers would not match, "
            f"delete that folder or set another output")
    differ = config_conflict(manifest.get("config"), config.to_dict())
    if "conventions" in differ:
        saved_convention = manifest["config"].get("conventions", RECORDED_BEFORE)
        raise FeatureConfigMismatchError(
            f"{out} holds features whose quartiles and MAD follow the {saved_convention!r} "
            f"convention, asked for {config.conventions!r}; set features.conventions: "
            f"{saved_convention} to resume, or delete that folder or set another output")
    if differ:
        raise FeatureConfigMismatchError(
            f"{out} holds features extracted with other feature settings (keys {differ} differ); "
            f"finished images would be skipped and the tables would mix, delete that folder or "
            f"set another output")


def _write_manifest(out: Path, dataset_dir: str, ds, config: FeatureConfig, options: dict,
                    sources: list[dict], segmentation: dict, given: FeatureConfig,
                    size: int) -> None:
    manifest = {"dataset_dir": str(dataset_dir), "dataset_options": options, "n_images": len(ds),
                "config": config.to_dict(), "user_config": given.to_dict(), "segmentation": segmentation,
                "conventions": config.conventions,
                "channel_names": list(ds.channel_names),
                "storage": {"layout": "shards", "shard_images": size, "dtype": config.dtype},
                "packages": _versions(), "images": sources}
    atomic.write_json(out / "manifest.json", manifest)


def _resume(out: Path, ds, size: int) -> tuple[list[dict], set[int]]:
    """Bring ``out`` in line with ``ds`` (:func:`.resume.reconcile`).

    Returns the sources and the ImageNumbers finished (in a kept shard, or staged).
    """
    sources = [ds.source(i) for i in range(len(ds))]
    current = [source_key(s) for s in sources]
    state = reconcile(out, current, size)
    plan = state.plan
    if plan.moves or plan.stale or plan.unknown:
        log.warning("%s changed since its shards were written: %s", out, plan.summary(len(ds)))
    staged = {i + 1 for i, key in enumerate(current) if key in state.staged}
    return sources, state.done | staged


class _Shards:
    """The shard ranges of one run: how many images each still waits for, and its members."""

    def __init__(self, out: Path, keys: list[str], todo: list[int], size: int) -> None:
        self.out, self.keys, self.size = out, keys, size
        self.pending: dict[int, int] = {}
        for index in todo:
            first = shards.shard_first(index + 1, size)
            self.pending[first] = self.pending.get(first, 0) + 1

    def members(self, first: int) -> dict[int, str]:
        last = min(first + self.size - 1, len(self.keys))
        return {n: self.keys[n - 1] for n in range(first, last + 1)}

    def write_ready(self) -> None:
        """Write every range that waits for no image (staged images left by an earlier run)."""
        for first in range(1, len(self.keys) + 1, self.size):
            if not self.pending.get(first):
                assemble_range(self.out, first, self.size, self.members(first))

    def finished(self, index: int) -> None:
        """Image ``index`` is done or failed: write its shard when it was the last awaited."""
        first = shards.shard_first(index + 1, self.size)
        self.pending[first] -= 1
        if not self.pending[first]:
            assemble_range(self.out, first, self.size, self.members(first))


def _append_errors(out: Path, records: list[dict]) -> None:
    path = out / "errors.csv"
    known = set()
    if path.exists():
        with path.open(newline="") as fh:
            known = {(r["sample_id"], r["path"]) for r in csv.DictReader(fh)}
    new = [r for r in records if r and (r["sample_id"], r["path"]) not in known]
    write_header = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["sample_id", "path", "reason"])
        if write_header:
            writer.writeheader()
        writer.writerows(new)
        fh.flush()


def _run_dask(scheduler: str, tasks: list, bar: tqdm, out: Path, version: str,
              written: _Shards) -> list:
    from distributed import Client, as_completed

    errors = []
    with Client(scheduler) as client:
        futures = [client.submit(process_one, *args, version=version, pure=False) for args in tasks]
        for fut in as_completed(futures):
            index, rec = fut.result()
            if rec:
                errors.append(rec)
                _append_errors(out, [rec])
            written.finished(index)
            bar.update(1)
    return errors


def run_extraction(dataset_dir: str | Path, out_dir: str | Path, config: FeatureConfig | None = None,
                   jobs: int = 1, scheduler: str | None = None, *,
                   dataset_options: dict | None = None,
                   plan: tuple[FeatureConfig, dict] | None = None,
                   shard_images: int = shards.SHARD_IMAGES) -> Path:
    """Extract features for every image of a dataset, resumably.

    Parameters
    ----------
    dataset_dir : str or Path
        Dataset root, read with :func:`datasets.open_dataset`.
    out_dir : str or Path
        Output folder (created); finished images found there are skipped.
    config : FeatureConfig, optional
        Defaults to ``FeatureConfig()`` (``standard`` preset).
    jobs : int
        joblib worker processes (ignored when ``scheduler`` is given).
    scheduler : str, optional
        Address of a Dask distributed scheduler to run the images on (not contacted when every
        image is already extracted).
    dataset_options : dict, optional
        Keyword arguments of :func:`datasets.open_dataset` (``layout``, ``include_classes``,
        ``exclude_classes``, ``on_error`` and reader options such as ``group_by``,
        ``label_column``, ``group_pattern``, ``suffixes``). Left-out keys default to
        :data:`DEFAULT_DATASET_OPTIONS` (note ``on_error="skip"``: unreadable images go to
        ``errors.csv``). Recorded in ``manifest.json``.
    plan : (FeatureConfig, dict), optional
        What :func:`features.plan.plan_extraction` chose for ``config`` on this dataset and
        ``out_dir``, when the caller has it already (the images are then not sampled again).
        Unset channels and diameter are otherwise chosen here.
    shard_images : int
        ImageNumbers per shard file (recorded in ``manifest.json``; a resume with another
        value rewrites the shards that do not fit it, nothing is extracted again).

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    DatasetOptionsMismatchError
        ``out_dir`` already holds features extracted with options that select other images
        (``on_error`` may change between runs).
    FeatureConfigMismatchError
        ``out_dir`` already holds features extracted with other feature settings (``dtype``
        included).
    DatasetChangedError
        ``out_dir`` holds features of another dataset (no finished image belongs to this one).
        Images that changed or left the dataset are replaced, and images whose position moved
        are renumbered (a warning says how many); a damaged shard is redone.
    FolderLockedError
        Another extraction is writing into ``out_dir``.
    shards.DiskFullError
        The disk filled up (the message names the folder and the bytes needed; no partial
        shard is left, finished images are kept).
    """
    config = config or FeatureConfig()
    out = Path(out_dir)
    options = normalize_dataset_options(dataset_options)
    from cellcompare.datasets import open_dataset

    # opened before out is created: a dataset that cannot be read leaves no empty output behind
    ds = open_dataset(str(dataset_dir), **{**DEFAULT_DATASET_OPTIONS, **options})  # never an older view
    given = config
    # the same channels and sizes for every image
    config, segmentation = plan if plan is not None else plan_extraction(ds, config, out)
    _check_resume(out, options, config)
    with folder_lock(out):
        _extract(ds, str(dataset_dir), out, config, options, segmentation, given,
                 jobs=jobs, scheduler=scheduler, size=shard_images)
    return out


def _extract(ds, dataset_dir: str, out: Path, config: FeatureConfig, options: dict,
             segmentation: dict, given: FeatureConfig, *, jobs: int, scheduler: str | None,
             size: int) -> None:
    """The locked part of :func:`run_extraction`: resume, extract what is left, write shards."""
    from cellcompare.datasets.storage import is_url

    for sub in ("cells", "image", shards.STAGE):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("cells", "image", "qc", shards.STAGE):
        for path in atomic.remove_stale(out / sub):
            log.info("removed %s, left by a job killed while writing it", path)
    sources, done = _resume(out, ds, size)
    version = hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()[:16]
    # workers get absolute paths: a reused worker process keeps the folder it started in
    where = dataset_dir if is_url(dataset_dir) else str(Path(dataset_dir).absolute())
    _remember((where, json.dumps(options), version), ds)   # jobs=1 runs in this process
    _write_manifest(out, dataset_dir, ds, config, options, sources, segmentation, given, size)
    skipped = [{"sample_id": "", "path": str(r.path), "reason": str(r.reason)} for r in ds.skipped]
    _append_errors(out, skipped)
    todo = [i for i in range(len(ds)) if i + 1 not in done]
    log.info("%d of %d images to extract into %s (Intensity quartiles and MAD: %s convention)",
             len(todo), len(ds), out, config.conventions)
    written = _Shards(out, [source_key(s) for s in sources], todo, size)
    written.write_ready()
    tasks = [(where, str(out.absolute()), i, config, i < config.qc_samples, options) for i in todo]
    bar = progress_bar(total=len(todo), desc="features", unit="img")
    start = time.perf_counter()
    if scheduler and tasks:  # nothing to do: no scheduler to connect to (or wait 30 s for)
        _run_dask(scheduler, tasks, bar, out, version, written)
    else:
        runner = Parallel(n_jobs=jobs, return_as="generator_unordered", backend="loky")
        parent = os.getpid()   # local workers watch it (Dask workers have their own nanny)
        for index, rec in runner(delayed(process_one)(*t, parent_pid=parent, version=version)
                                 for t in tasks):
            if rec:
                _append_errors(out, [rec])
            written.finished(index)
            bar.update(1)
            bar.set_postfix(img_per_s=f"{bar.n / max(time.perf_counter() - start, 1e-9):.2f}")
    bar.close()


def load_table(out_dir: str | Path, level: str = "image", *, cells_per_image: int | None = None,
               seed: int = 0, columns: list[str] | None = None) -> pd.DataFrame:
    """Concatenate the parts of a finished extraction.

    Parameters
    ----------
    out_dir : str or Path
        Output folder of :func:`run_extraction`.
    level : {"cell", "image"}
        Per-cell or per-image table.
    cells_per_image : int, optional
        Cell table only: keep at most this many cells per image, streamed with
        ``tables.sample_cells`` (seeded by ``seed``) so the whole table is never in memory.
    seed : int
        Seed of the cell choice (with ``cells_per_image``).
    columns : list of str, optional
        Read only these columns (Parquet column projection) besides the keys
        (``Metadata_ImageNumber``, ``Metadata_ObjectNumber``); a part without one of them
        (an image without cells) gets NaN there, as in the whole table.

    Returns
    -------
    pd.DataFrame
        Rows sorted by ImageNumber (and ObjectNumber). A current compacted dataset
        (``tables.compact``) is read instead of the per-image parts.
    """
    from cellcompare.features import tables

    if level not in ("cell", "image"):
        raise ValueError(f"level must be 'cell' or 'image', got {level!r}")
    if cells_per_image is not None and level == "cell":
        return tables.sample_cells(tables.open_table(out_dir, "cell"), cells_per_image, seed=seed,
                                   columns=columns)
    if tables.compacted_path(out_dir, level) is not None:
        return tables.read_dataset(tables.open_table(out_dir, level), columns=columns)
    folder = Path(out_dir) / ("cells" if level == "cell" else "image")
    parts = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
    if not parts:
        raise FileNotFoundError(f"no Parquet parts under {folder}; run `python -m cellcompare.features extract` first")
    keys = ["Metadata_ImageNumber"] + (["Metadata_ObjectNumber"] if level == "cell" else [])
    frames = [tables.read_part(p, None if columns is None else [*keys, *columns]) for p in parts]
    frames = [f for f in frames if len(f)] or frames[:1]
    table = pd.concat(frames, ignore_index=True)
    return table.sort_values(keys, kind="stable").reset_index(drop=True)

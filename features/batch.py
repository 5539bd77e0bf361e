"""The resumable batch job: one Parquet part per image, written atomically.

Layout of ``out_dir``: ``cells/{n:06d}.parquet`` and ``image/{n:06d}.parquet`` per finished
image (``n`` = ImageNumber), ``manifest.json``, ``errors.csv`` and ``qc/{sample_id}.npz``.
An image is done when its ``image`` part exists; parts are written to a temporary name and
moved with ``os.replace``, so a killed job never leaves a half-written part and a restart skips
finished images. Workers open the dataset themselves and read one image each, so memory
stays bounded by ``jobs`` images.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import os
import platform
import time
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from .config import FeatureConfig
from .extract import _channel_names, extract_sample, segment_sample

log = logging.getLogger(__name__)
PACKAGES = ("numpy", "scipy", "scikit-image", "pandas", "pyarrow", "cp-measure", "joblib")


def _atomic_parquet(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _part(out: Path, level: str, number: int) -> Path:
    return out / level / f"{number:06d}.parquet"


@functools.lru_cache(maxsize=2)
def _open(dataset_dir: str):
    """Open a dataset once per worker process (probing headers is not free)."""
    from datasets import open_dataset

    return open_dataset(dataset_dir, on_error="skip")


def process_one(dataset_dir: str, out_dir: str, index: int, config: FeatureConfig,
                write_qc: bool) -> dict | None:
    """Extract image ``index`` of the dataset and write its parts; return an error record or None."""
    out = Path(out_dir)
    ds = _open(dataset_dir)
    sid, path = str(ds.ids[index]), ""
    try:
        sample = ds[index]
        path = sample.paths[0] if sample.paths else ""
        image = np.asarray(sample.float_image, dtype=np.float64)
        masks = segment_sample(image, _channel_names(sample), config, sid)
        cells, row = extract_sample(sample, config, image_number=index + 1, masks=masks)
    except (ValueError, OSError) as exc:
        return {"sample_id": sid, "path": path, "reason": f"{type(exc).__name__}: {exc}"}
    if write_qc:
        (out / "qc").mkdir(exist_ok=True)
        qc = {"nuclei": masks.get("Nuclei", masks["Cells"]), "cells": masks["Cells"]}
        tmp = out / "qc" / f".{sid}.tmp.npz"
        np.savez_compressed(tmp, **qc)
        os.replace(tmp, out / "qc" / f"{sid}.npz")
    _atomic_parquet(cells, _part(out, "cells", index + 1))
    _atomic_parquet(row, _part(out, "image", index + 1))
    if len(cells) == 0:
        return {"sample_id": sid, "path": path, "reason": "zero objects segmented"}
    return None


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _write_manifest(out: Path, dataset_dir: str, ds, config: FeatureConfig) -> None:
    files = []
    for path in sorted({p for e in getattr(ds, "_entries", []) for p in e.paths}):
        files.append({"path": str(path), "bytes": os.path.getsize(path) if os.path.exists(path) else None})
    manifest = {"dataset_dir": str(dataset_dir), "n_images": len(ds), "config": config.to_dict(),
                "channel_names": list(ds.channel_names), "packages": _versions(), "files": files}
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, out / "manifest.json")


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


def _run_dask(scheduler: str, tasks: list, bar: tqdm, out: Path) -> list:
    from distributed import Client, as_completed

    errors = []
    with Client(scheduler) as client:
        futures = [client.submit(process_one, *args, pure=False) for args in tasks]
        for fut in as_completed(futures):
            rec = fut.result()
            if rec:
                errors.append(rec)
                _append_errors(out, [rec])
            bar.update(1)
    return errors


def run_extraction(dataset_dir: str | Path, out_dir: str | Path, config: FeatureConfig | None = None,
                   jobs: int = 1, scheduler: str | None = None) -> Path:
    """Extract features for every image of a dataset, resumably.

    Parameters
    ----------
    dataset_dir : str or Path
        Dataset root, read with :func:`datasets.open_dataset`.
    out_dir : str or Path
        Output folder (created); finished parts found there are skipped.
    config : FeatureConfig, optional
        Defaults to ``FeatureConfig()`` (``standard`` preset).
    jobs : int
        joblib worker processes (ignored when ``scheduler`` is given).
    scheduler : str, optional
        Address of a Dask distributed scheduler to run the images on.

    Returns
    -------
    Path
        ``out_dir``.
    """
    config = config or FeatureConfig()
    out = Path(out_dir)
    for sub in ("cells", "image"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    ds = _open(str(dataset_dir))
    _write_manifest(out, str(dataset_dir), ds, config)
    skipped = [{"sample_id": "", "path": str(r.path), "reason": str(r.reason)} for r in ds.skipped]
    _append_errors(out, skipped)
    todo = [i for i in range(len(ds)) if not _part(out, "image", i + 1).exists()]
    log.info("%d of %d images to extract into %s", len(todo), len(ds), out)
    tasks = [(str(dataset_dir), str(out), i, config, i < config.qc_samples) for i in todo]
    bar = tqdm(total=len(todo), desc="features", unit="img", disable=None)
    start = time.perf_counter()
    if scheduler:
        _run_dask(scheduler, tasks, bar, out)
    else:
        runner = Parallel(n_jobs=jobs, return_as="generator_unordered", backend="loky")
        for rec in runner(delayed(process_one)(*t) for t in tasks):
            if rec:
                _append_errors(out, [rec])
            bar.update(1)
            bar.set_postfix(img_per_s=f"{bar.n / max(time.perf_counter() - start, 1e-9):.2f}")
    bar.close()
    return out


def load_table(out_dir: str | Path, level: str = "image") -> pd.DataFrame:
    """Concatenate the parts of a finished extraction.

    Parameters
    ----------
    out_dir : str or Path
        Output folder of :func:`run_extraction`.
    level : {"cell", "image"}
        Per-cell or per-image table.

    Returns
    -------
    pd.DataFrame
        Rows sorted by ImageNumber (and ObjectNumber).
    """
    if level not in ("cell", "image"):
        raise ValueError(f"level must be 'cell' or 'image', got {level!r}")
    folder = Path(out_dir) / ("cells" if level == "cell" else "image")
    parts = sorted(folder.glob("*.parquet"))
    if not parts:
        raise FileNotFoundError(f"no Parquet parts under {folder}; run `python -m features extract` first")
    frames = [pd.read_parquet(p) for p in parts]
    frames = [f for f in frames if len(f)] or frames[:1]
    table = pd.concat(frames, ignore_index=True)
    keys = ["Metadata_ImageNumber"] + (["Metadata_ObjectNumber"] if level == "cell" else [])
    return table.sort_values(keys, kind="stable").reset_index(drop=True)

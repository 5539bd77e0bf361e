"""Convert a dataset's TIFFs to PNG, keeping bit depth (8-bit stays 8-bit, 16-bit stays 16-bit).

PNG is lossless and compresses microscopy well, and every reader here opens it, so a dataset
can be converted before it is uploaded. Every written PNG is read back and compared with the
TIFF's pixels; a difference is an error, never a silent change.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cellcompare.atomic import atomic_path
from cellcompare.progress import progress_bar

from .errors import DatasetError
from .imageio import TIFF_SUFFIXES, read_image

__all__ = ["ConvertError", "ConvertReport", "convert_dataset", "convert_image", "png_planes"]

logger = logging.getLogger(__name__)


class ConvertError(DatasetError):
    """An image cannot be stored as PNG without losing information."""


@dataclass
class ConvertReport:
    """What :func:`convert_dataset` did (paths relative to the output root)."""

    converted: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    rewritten_csv: list[str] = field(default_factory=list)


def png_planes(image: np.ndarray, path: str | Path = "image", *,
               split_channels: bool = False) -> list[tuple[str, np.ndarray]]:
    """The PNG images that store ``image`` exactly, with the suffix each file name gets.

    Parameters
    ----------
    image : np.ndarray
        ``(C, H, W)`` uint8 or uint16.
    path : str or Path
        The source file, named in errors.
    split_channels : bool
        Write a multi-channel image (other than 8-bit RGB) as one PNG per channel
        (``_c1``, ``_c2``, ...) instead of refusing it.

    Returns
    -------
    list of (str, np.ndarray)
        ``("", (H, W))`` for one channel, ``("", (H, W, 3))`` for 8-bit RGB, or one
        ``("_c{k}", (H, W))`` per channel.

    Raises
    ------
    ConvertError
        A dtype PNG cannot hold (float, signed, 32-bit), or several channels without
        ``split_channels``.
    """
    if image.dtype not in (np.uint8, np.uint16):
        raise ConvertError(f"{path}: pixels are {image.dtype}; PNG holds 8- or 16-bit unsigned "
                           f"integers only, so converting would change values; keep it as TIFF")
    channels = image.shape[0]
    if channels == 1:
        return [("", image[0])]
    if channels == 3 and image.dtype == np.uint8 and not split_channels:
        return [("", np.moveaxis(image, 0, -1))]
    if not split_channels:
        raise ConvertError(f"{path} has {channels} {image.dtype} channels; a PNG holds one channel "
                           f"or 8-bit RGB; pass --split-channels for one PNG per channel (_c1, _c2, ...)")
    return [(f"_c{k + 1}", image[k]) for k in range(channels)]


def _write_png(path: Path, plane: np.ndarray) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        Image.fromarray(plane).save(fh, format="PNG", compress_level=6)


def convert_image(src: str | Path, dst: str | Path, *, split_channels: bool = False) -> list[Path]:
    """Write the TIFF ``src`` as PNG ``dst`` (or ``dst`` stem + ``_c{k}``), bit depth kept.

    Returns
    -------
    list of Path
        The PNG files written; each was read back and equals the TIFF's pixels.
    """
    src, dst = Path(src), Path(dst)
    image = read_image(src)
    written = []
    for suffix, plane in png_planes(image, src, split_channels=split_channels):
        out = dst.with_name(f"{dst.stem}{suffix}.png")
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_png(out, plane)
        back = read_image(out)
        expected = plane[None] if plane.ndim == 2 else np.moveaxis(plane, -1, 0)
        if back.dtype != expected.dtype or not np.array_equal(back, expected):
            out.unlink(missing_ok=True)
            raise ConvertError(f"{out} read back as {back.dtype} {back.shape} differs from {src} "
                               f"({expected.dtype} {expected.shape}); nothing was kept")
        written.append(out)
    return written


def _rewrite_csv(src: Path, dst: Path, converted: set[str], roots: tuple[Path, Path]) -> bool:
    """Copy a LoadData CSV pointing at the converted copy; True when a cell changed.

    ``FileName_*`` cells naming a converted TIFF become the PNG; absolute ``PathName_*`` cells
    inside the source folder (``roots[0]``) move to the output folder (``roots[1]``).
    """
    table = pd.read_csv(src, dtype=str, keep_default_na=False)
    changed = False
    for column in table.columns:
        values = table[column].to_numpy(dtype=object)
        for i, value in enumerate(values):
            new = value
            if column.startswith("FileName_") and Path(value).suffix.lower() in TIFF_SUFFIXES \
                    and Path(value).name in converted:
                new = str(Path(value).with_suffix(".png"))
            elif column.startswith("PathName_") and Path(value).is_absolute() \
                    and Path(value).resolve().is_relative_to(roots[0]):
                new = str(roots[1] / Path(value).resolve().relative_to(roots[0]))
            changed |= new != value
            values[i] = new
        table[column] = values
    if not changed:
        return False
    with atomic_path(dst) as tmp:
        table.to_csv(tmp, index=False)
    return True


def convert_dataset(src: str | Path, out: str | Path, *, to: str = "png",
                    split_channels: bool = False, overwrite: bool = False,
                    layout: str = "auto") -> ConvertReport:
    """Copy a dataset folder with every TIFF converted to PNG (other files copied as they are),
    or (``to="omezarr"``) write it as OME-Zarr HCS plates (:func:`.omezarr_write.write_plates`).

    ``FileName_*`` columns of CSV files (LoadData) that name a converted TIFF are rewritten to
    the PNG, absolute ``PathName_*`` folders inside ``src`` to the same folder inside ``out``.
    Finished files are kept on a rerun unless ``overwrite`` (resumable).

    Parameters
    ----------
    src, out : str or Path
        Dataset folder and output folder (created; must not be ``src`` or inside it).
    to : {"png", "omezarr"}
        Target format.
    split_channels : bool
        See :func:`png_planes`.
    overwrite : bool
        Convert files whose output already exists.
    layout : str
        Layout of ``src`` for ``omezarr`` (:func:`~.loader.open_dataset`).

    Returns
    -------
    ConvertReport
        For ``omezarr``, ``converted`` lists the plates written.
    """
    if to == "omezarr":
        from .loader import open_dataset
        from .omezarr_write import write_plates

        plates = write_plates(open_dataset(src, layout), out, overwrite=overwrite)
        return ConvertReport(converted=[p.name for p in plates])
    if to != "png":
        raise ValueError(f"convert --to must be 'png' or 'omezarr', got {to!r}")
    src, out = Path(src).resolve(), Path(out).resolve()
    if not src.is_dir():
        raise DatasetError(f"dataset folder {src} does not exist or is not a folder")
    if out == src or src in out.parents:
        raise DatasetError(f"output {out} must not be the dataset folder {src} or inside it")
    files = sorted(p for p in src.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(src).parts))
    report = ConvertReport()
    tiffs = [p for p in files if p.suffix.lower() in TIFF_SUFFIXES]
    for path in progress_bar(tiffs, desc="convert", unit="img", enabled=len(tiffs) >= 20):
        rel = path.relative_to(src)
        dst = out / rel.with_suffix(".png")
        if dst.exists() and not overwrite:
            report.kept.append(dst.relative_to(out).as_posix())
            continue
        for written in convert_image(path, dst, split_channels=split_channels):
            report.converted.append(written.relative_to(out).as_posix())
    names = {p.name for p in tiffs} if not split_channels else set()
    for path in files:
        if path.suffix.lower() in TIFF_SUFFIXES:
            continue
        rel = path.relative_to(src)
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".csv" and _rewrite_csv(path, dst, names, (src, out)):
            report.rewritten_csv.append(rel.as_posix())
            continue
        shutil.copy2(path, dst)
        report.copied.append(rel.as_posix())
    if split_channels and tiffs:
        logger.warning("--split-channels: CSV FileName_ columns are not rewritten (one TIFF "
                       "became several PNGs)")
    logger.info("converted %d TIFFs to PNG, kept %d finished, copied %d other files into %s",
                len(report.converted), len(report.kept), len(report.copied), out)
    return report

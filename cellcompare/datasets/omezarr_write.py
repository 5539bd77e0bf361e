"""Write any dataset as OME-Zarr HCS plates (``cellcompare convert --to omezarr``).

One plate per ``Metadata_Plate`` (``{plate}.zarr`` in the output folder, NGFF 0.5 written by
``ome-zarr``), one well per ``Metadata_Well``, one field per sample at full resolution plus a
2x-downsampled level, channel names in ``omero`` metadata, each well's label in its
``cellcompare.label`` attribute (what :class:`~.omezarr.OmeZarrDataset` reads back). Samples
without a plate go to plate ``plate``; samples without a parseable well (class folders) get
wells in order, ``A01`` … ``A24``, ``B01`` …, logged. Pixels keep their dtype; every field is
read back and compared.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from cellcompare.progress import progress_bar

from .base import ImageDataset
from .errors import DatasetError
from .omezarr import ngff_attrs

__all__ = ["write_plates"]

logger = logging.getLogger(__name__)

_WELL = re.compile(r"^([A-Za-z]+)0*(\d+)$")
_COLUMNS = 24


def _well_of(value: object) -> tuple[str, str] | None:
    """``(row, column)`` of a ``Metadata_Well`` such as ``B03``; None when it is not one."""
    match = _WELL.match(str(value)) if value not in (None, "") else None
    return (match.group(1).upper(), str(int(match.group(2)))) if match else None


def _layout(ds: ImageDataset) -> dict[str, dict[tuple[str, str], list[int]]]:
    """Sample positions by plate and well."""
    plates: dict[str, dict[tuple[str, str], list[int]]] = defaultdict(lambda: defaultdict(list))
    rows = ds.index.to_dict("records")
    numbered = 0
    for i, row in enumerate(rows):
        plate = str(row.get("Metadata_Plate") or "plate")
        well = _well_of(row.get("Metadata_Well"))
        if well is None:
            well = (chr(ord("A") + numbered // _COLUMNS), str(numbered % _COLUMNS + 1))
            numbered += 1
        plates[plate][well].append(i)
    if numbered:
        logger.warning("%d samples of %s have no well; written to wells A01, A02, ... in order",
                       numbered, ds.root)
    return plates


def _write_field(group, image: np.ndarray, names: tuple[str, ...], where: str) -> None:
    from ome_zarr.writer import write_image

    top = float(np.iinfo(image.dtype).max) if image.dtype.kind in "ui" else 1.0
    window = {"start": 0.0, "end": top, "min": 0.0, "max": top}
    write_image(image, group, axes="cyx", scale_factors=[2],
                omero={"channels": [{"label": n, "color": "FFFFFF", "window": window} for n in names]})
    back = np.asarray(group[ngff_attrs(group)["multiscales"][0]["datasets"][0]["path"]][...])
    if back.dtype != image.dtype or not np.array_equal(back, image):
        raise DatasetError(f"{where}: the field read back differs from the image written")


def write_plates(ds: ImageDataset, out: str | Path, *, overwrite: bool = False) -> list[Path]:
    """Write every sample of ``ds`` into OME-Zarr plates under ``out``; returns the plates.

    Parameters
    ----------
    ds : ImageDataset
        Any opened dataset.
    out : str or Path
        Output folder (created); holds ``{plate}.zarr``.
    overwrite : bool
        Replace plates that exist (otherwise an existing plate is an error).

    Returns
    -------
    list of Path
        The plates written.
    """
    import zarr
    from ome_zarr.writer import write_plate_metadata, write_well_metadata

    out = Path(out)
    records = ds.index.to_dict("records")
    written = []
    for plate, wells in _layout(ds).items():
        path = out / f"{re.sub(r'[^A-Za-z0-9._-]', '_', plate)}.zarr"
        if path.exists() and not overwrite:
            raise DatasetError(f"plate {path} exists; pass --overwrite to replace it")
        root = zarr.open_group(str(path), mode="w")
        rows = sorted({r for r, _ in wells}, key=lambda r: (len(r), r))
        columns = sorted({c for _, c in wells}, key=int)
        write_plate_metadata(root, rows, columns, [f"{r}/{c}" for r, c in sorted(wells)], name=plate)
        for (r, c), positions in progress_bar(sorted(wells.items()), desc=f"plate {plate}",
                                             enabled=len(wells) >= 20):
            group = root.require_group(r).require_group(c)
            sites = [str(records[i].get("Metadata_Site") or k) for k, i in enumerate(positions)]
            if len(set(sites)) != len(sites) or not all(re.fullmatch(r"[A-Za-z0-9_-]+", s) for s in sites):
                sites = [str(k) for k in range(len(positions))]
            write_well_metadata(group, sites)
            labels = {ds.labels[i] for i in positions}
            if len(labels) > 1:
                raise DatasetError(f"well {r}{c} of plate {plate} holds samples of several labels "
                                   f"{sorted(map(str, labels))}; an OME-Zarr well has one")
            group.attrs["cellcompare"] = {"label": labels.pop()}
            for site, i in zip(sites, positions):
                _write_field(group.require_group(site), ds[i].image, ds.channel_names,
                             f"{path}/{r}/{c}/{site}")
        written.append(path)
        logger.info("wrote plate %s: %d wells, %d fields", path, len(wells),
                    sum(len(p) for p in wells.values()))
    return written

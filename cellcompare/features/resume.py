"""Which Parquet parts of an output folder still hold the current dataset's images.

Parts are numbered by the image's position in the dataset (``Metadata_ImageNumber``), and
positions shift when images are added or removed. So every image part carries, in its Parquet
key-value metadata, the *source record* of the image it was computed from (sample id plus each
file's size and mtime, :meth:`datasets.ImageDataset.source`). On resume the parts are compared
with the dataset as it is now:

- a part whose source equals the image now at its number is kept;
- a part whose source equals the image now at another number is *moved* there (renumbered,
  nothing recomputed);
- any other part is *stale* (its image changed or left the dataset) and is deleted, so the
  image now at that number is extracted again;
- when no part belongs to the dataset at all, the folder was made from another dataset and
  resuming is refused.

Moves go through ``.moving/`` so a job killed half-way finishes them on the next start.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cellcompare.atomic import atomic_path

log = logging.getLogger(__name__)

SOURCE_KEY = b"cellcompare.source"
LEVELS = ("cells", "image")          # cells first: the image part marks an image as done
_STAGE = ".moving"


class DatasetChangedError(ValueError):
    """The output folder holds features of another dataset."""


def part_path(out: Path, level: str, number: int) -> Path:
    """``out/{level}/{number:06d}.parquet``."""
    return out / level / f"{number:06d}.parquet"


def source_key(source: dict) -> str:
    """Canonical JSON of a source record (equal records give equal keys)."""
    return json.dumps(source, sort_keys=True, separators=(",", ":"))


def write_part(table: pa.Table, path: Path, source: dict) -> None:
    """Write ``table`` atomically to ``path`` with ``source`` in its key-value metadata.

    Column statistics are written for the ``Metadata_*`` columns only (what dataset filters
    read): for thousands of feature columns they are a third of a one-image part's footer.
    """
    meta = dict(table.schema.metadata or {})
    meta[SOURCE_KEY] = source_key(source).encode()
    keys = [name for name in table.column_names if name.startswith("Metadata_")]
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp, write_statistics=keys)


def read_source(path: Path) -> str | None:
    """The source key stored in a part's footer (None for parts written before it existed)."""
    meta = pq.read_schema(path).metadata or {}
    value = meta.get(SOURCE_KEY)
    return value.decode() if value is not None else None


@dataclass
class ResumePlan:
    """What to do with the parts found in an output folder."""

    keep: list[int] = field(default_factory=list)
    moves: dict[int, int] = field(default_factory=dict)     # old number -> new number
    stale: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)        # no source record (older version)

    def summary(self, n_images: int) -> str:
        done = len(self.keep) + len(self.moves)
        return (f"{len(self.keep)} parts current, {len(self.moves)} moved to a new image number, "
                f"{len(self.stale)} stale (image changed or gone), {len(self.unknown)} without a "
                f"source record; {n_images - done} of {n_images} images to extract")


def plan_resume(found: dict[int, str | None], current: list[str]) -> ResumePlan:
    """Match the parts found (number -> source key) to the dataset's images (position -> key).

    Parameters
    ----------
    found : dict of int to str or None
        Source key of each existing image part, by part number (1-based).
    current : list of str
        Source key of each image of the dataset now, by position (0-based).

    Returns
    -------
    ResumePlan

    Raises
    ------
    DatasetChangedError
        Parts exist, some carry a source record, and none of them matches an image of the
        dataset by sample id: the folder was made from another dataset.
    """
    position = {key: i + 1 for i, key in enumerate(current)}
    plan = ResumePlan()
    for number, key in sorted(found.items()):
        if key is None:
            plan.unknown.append(number)
        elif position.get(key) == number:
            plan.keep.append(number)
        elif key in position:
            plan.moves[number] = position[key]
        else:
            plan.stale.append(number)
    known = [key for key in found.values() if key is not None]
    ids_now = {json.loads(key)["sample_id"] for key in current}
    if known and not plan.keep and not plan.moves and \
            not any(json.loads(key)["sample_id"] in ids_now for key in known):
        example = json.loads(known[0])["sample_id"]
        raise DatasetChangedError(
            f"none of the {len(known)} finished images (e.g. sample {example!r}) is in the dataset "
            f"being extracted: the folder holds features of another dataset")
    return plan


def scan_parts(out: Path) -> dict[int, str | None]:
    """Source key of every image part under ``out/image`` (number -> key)."""
    found = {}
    for path in sorted((out / "image").glob("[0-9]*.parquet")):
        found[int(path.stem)] = read_source(path)
    return found


def _renumbered(path: Path, number: int) -> pa.Table:
    table = pq.read_table(path)
    column = table.schema.get_field_index("Metadata_ImageNumber")
    values = pa.array([number] * table.num_rows, type=table.schema.field(column).type)
    return table.set_column(column, table.schema.field(column), values)


def finish_moves(out: Path) -> int:
    """Write the parts staged in ``out/.moving`` under their new numbers; returns how many."""
    stage = out / _STAGE
    if not stage.is_dir():
        return 0
    staged = sorted(stage.glob("*.parquet"), key=lambda p: (LEVELS.index(p.suffixes[0][1:]), p.name))
    for path in staged:
        level = path.suffixes[0][1:]
        new = int(path.name.split(".")[0].split("-")[1])
        table = _renumbered(path, new)
        with atomic_path(part_path(out, level, new)) as tmp:
            pq.write_table(table, tmp)
        path.unlink()
    stage.rmdir()
    return len(staged)


def apply_plan(out: Path, plan: ResumePlan) -> None:
    """Delete stale and unrecorded parts, then move the others to their new numbers."""
    for number in plan.stale + plan.unknown:
        for level in LEVELS[::-1]:                  # image part first: the image is not done
            part_path(out, level, number).unlink(missing_ok=True)
    if not plan.moves:
        return
    stage = out / _STAGE
    stage.mkdir(exist_ok=True)
    for old, new in plan.moves.items():
        for level in LEVELS[::-1]:
            src = part_path(out, level, old)
            if src.exists():
                os.replace(src, stage / f"{old:06d}-{new:06d}.{level}.parquet")
    finish_moves(out)

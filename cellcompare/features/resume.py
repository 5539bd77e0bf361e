"""Which shards of an output folder still hold the current dataset's images.

Shards (:mod:`.shards`) hold ranges of ImageNumbers (the image's position in the dataset), and
positions shift when images are added or removed. So every shard records, per image, the
*source record* it was computed from (sample id plus each file's size and mtime,
:meth:`datasets.ImageDataset.source`). On resume the shards are compared with the dataset as
it is now (:func:`plan_resume`, :func:`reconcile`):

- a shard whose every image is still at its number is kept as it is;
- any other shard is *unpacked*: its images still in the dataset go back to ``staged/``
  (keyed by source, so a moved image is renumbered, nothing recomputed) and the shard is
  deleted; images that changed or left the dataset are dropped and extracted again;
- a shard with an unreadable footer, or whose row count differs from its record, is deleted
  (a warning names it) and its images are extracted again;
- when no finished image belongs to the dataset at all, the folder was made from another
  dataset and resuming is refused.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from . import shards
from .shards import LEVELS, check_shard, shard_files, shard_first, shard_name, stage_path

log = logging.getLogger(__name__)


class DatasetChangedError(ValueError):
    """The output folder holds features of another dataset."""


def source_key(source: dict) -> str:
    """Canonical JSON of a source record (equal records give equal keys)."""
    return json.dumps(source, sort_keys=True, separators=(",", ":"))


@dataclass
class ResumePlan:
    """What to do with the images found in an output folder's shards."""

    keep: list[int] = field(default_factory=list)
    moves: dict[int, int] = field(default_factory=dict)     # old number -> new number
    stale: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)        # no source record (older version)

    def summary(self, n_images: int) -> str:
        done = len(self.keep) + len(self.moves)
        return (f"{len(self.keep)} images current, {len(self.moves)} moved to a new image number, "
                f"{len(self.stale)} stale (image changed or gone), {len(self.unknown)} without a "
                f"source record; {n_images - done} of {n_images} images to extract")


def plan_resume(found: dict[int, str | None], current: list[str],
                staged: list[str] = ()) -> ResumePlan:
    """Match the images found (number -> source key) to the dataset's images (position -> key).

    Parameters
    ----------
    found : dict of int to str or None
        Source key of each image found in a shard, by ImageNumber (1-based).
    current : list of str
        Source key of each image of the dataset now, by position (0-based).
    staged : list of str
        Source keys of finished images not yet in a shard (they count for the dataset check).

    Returns
    -------
    ResumePlan

    Raises
    ------
    DatasetChangedError
        Finished images exist and none of them matches an image of the dataset by sample
        id: the folder was made from another dataset.
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
    known = [key for key in found.values() if key is not None] + list(staged)
    ids_now = {json.loads(key)["sample_id"] for key in current}
    if known and not plan.keep and not plan.moves and \
            not any(json.loads(key)["sample_id"] in ids_now for key in known):
        example = json.loads(known[0])["sample_id"]
        raise DatasetChangedError(
            f"none of the {len(known)} finished images (e.g. sample {example!r}) is in the dataset "
            f"being extracted: the folder holds features of another dataset")
    return plan


def _scan(out: Path) -> dict[Path, list[shards.Entry]]:
    """Checked entries of every image shard; damaged shards and orphan files are deleted."""
    found = {}
    for image in shard_files(out):
        try:
            found[image] = check_shard(image)
        except ValueError as exc:
            log.warning("%s: deleting that shard, its images will be extracted again", exc)
            for level in LEVELS[::-1]:
                (out / level / image.name).unlink(missing_ok=True)
    for cells in sorted((out / "cells").glob("shard-*.parquet")):
        if not (out / "image" / cells.name).exists():   # a job killed between the two files
            cells.unlink()
    return found


@dataclass
class Reconciled:
    """The state of an output folder after :func:`reconcile`."""

    done: set[int]            # ImageNumbers held by a kept shard
    staged: set[str]          # source keys of finished images waiting for their shard
    plan: ResumePlan


def reconcile(out: Path, current: list[str], size: int) -> Reconciled:
    """Bring the shards and staged images of ``out`` in line with the dataset's ``current`` keys.

    Kept shards stay byte for byte; the others are unpacked into ``staged/`` (images still in
    the dataset) and deleted; staged files of images no longer in the dataset, or already in a
    kept shard (a job killed after writing the shard), are deleted.
    """
    found = _scan(out)
    staged = shards.staged_keys(out)
    plan = plan_resume({e.number: e.key for es in found.values() for e in es}, current,
                       staged=list(staged))
    wanted, kept = set(current), set(plan.keep)
    done, in_shards = set(), set()
    for image, recorded in found.items():
        exact = image.name == shard_name(shard_first(recorded[0].number, size), size)
        if exact and all(e.number in kept for e in recorded):
            done.update(e.number for e in recorded)
            in_shards.update(e.key for e in recorded)
        else:
            shards.unpack(out, image, wanted)
    for path in sorted((out / shards.STAGE).glob("*.arrow")):
        key = shards.read_staged(path)[0]
        if key not in wanted or key in in_shards:
            path.unlink()
    return Reconciled(done=done, staged=set(shards.staged_keys(out)), plan=plan)


def assemble_range(out: Path, first: int, size: int, members: dict[int, str]) -> int:
    """Write the shard of range ``first`` from its staged ``members`` (number -> key).

    An existing shard of that range (some images failed before and now succeed) is unpacked
    first, so the new shard holds its images and the new ones in ImageNumber order.
    """
    existing = out / "image" / shard_name(first, size)
    if not any(stage_path(out, key, "image").exists() for key in members.values()):
        return 0
    if existing.exists():
        shards.unpack(out, existing, set(members.values()))
    return shards.assemble(out, first, size, members)

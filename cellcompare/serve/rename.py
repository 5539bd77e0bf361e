"""Append top-3 predictions to file names safely, with an undo manifest."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
from pathlib import Path
from typing import NamedTuple, Sequence

from cellcompare import atomic
from cellcompare.serve.errors import RenameError
from cellcompare.serve.predict import PredictionRow

logger = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9+\-=.,@]+")


def sanitize(name: str) -> str:
    """Make a class name safe inside a file name (no separators, ``..``, control chars)."""
    cleaned = _UNSAFE.sub("-", str(name))
    cleaned = re.sub(r"\.{2,}", ".", cleaned).strip(".-")
    return cleaned[:40] or "class"


def name_max(folder: Path) -> int:
    """Longest file name (bytes) the file system of ``folder`` allows (255 when unknown)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def new_name(path: Path, top: Sequence[tuple[str, float]], max_bytes: int | None = None) -> str | None:
    """``embryo_017.tif`` + top → ``embryo_017__stage4-0.81_stage5-0.12_stage3-0.04.tif``.

    When the name would exceed ``max_bytes`` (the file system's limit), fewer classes are
    appended, then only the top class without its probability, then that class shortened;
    None when not even that fits (the caller skips the file with a reason).
    """
    suffix = "".join(path.suffixes[-2:]) if path.name.lower().endswith(".ome.tif") else path.suffix
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    tops = [(sanitize(c), p) for c, p in top[:3]]
    tags = ["_".join(f"{c}-{p:.2f}" for c, p in tops[:n]) for n in range(len(tops), 0, -1)]
    tags += [tops[0][0][:width] for width in (40, 16, 8, 4)]
    for tag in tags:
        name = f"{stem}__{tag}{suffix}"
        if max_bytes is None or len(os.fsencode(name)) <= max_bytes:
            return name
    return None


def plan_renames(rows: Sequence[PredictionRow], *,
                 channel_files: bool = False) -> list[tuple[Path, Path]]:
    """``(old, new)`` pairs for the files of rows without error.

    Only the files an image was read from (``row.files``, absolute paths recorded when
    reading) are renamed, never a path built from a sample id. A sample made of several files
    (one per channel, e.g. an RxRx1 site) is skipped with a logged reason unless
    ``channel_files=True`` asks for each of its files to get the same tags (its layout will no
    longer be read as before until ``undo``). A file whose new name would not fit the file
    system, or whose target exists, is skipped with a logged reason. Targets stay in the file's
    folder.
    """
    plan, targets = [], set()
    for row in rows:
        if row.error or not row.top:
            continue
        if not row.files:
            logger.warning("skip %s: no file recorded as read for it", row.path)
            continue
        if len(row.files) > 1 and not channel_files:
            logger.warning("skip %s: the image is made of %d files (one per channel); pass "
                           "--rename-channel-files to rename each of them", row.path, len(row.files))
            continue
        for file in row.files:
            old = Path(file)  # absolute, not resolve(): rename a symlink, not its target
            limit = name_max(old.parent)
            name = new_name(old, row.top, limit)
            if name is None:
                logger.warning("skip %s: no name with the top class fits the file system's "
                               "%d-byte limit", old, limit)
                continue
            new = old.parent / name
            if Path(name).name != name or new.resolve().parent != old.parent.resolve():
                raise RenameError(f"renaming {old} to {new} would leave its folder {old.parent}")
            if new.exists() or new in targets:
                logger.warning("skip %s: target %s exists", old, new.name)
                continue
            targets.add(new)
            plan.append((old, new))
    return plan


def apply_renames(plan: Sequence[tuple[Path, Path]], manifest: str | Path) -> Path:
    """Rename per ``plan`` (never overwriting) and record what was done in ``manifest``."""
    manifest = Path(manifest)
    done: list[dict[str, str]] = []
    record = {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "renames": done}
    try:
        for old, new in plan:
            if new.exists():
                logger.warning("skip %s: %s appeared meanwhile", old, new)
                continue
            old.rename(new)
            done.append({"old": str(old), "new": str(new)})
    finally:
        atomic.write_json(manifest, record)
    return manifest


class Undone(NamedTuple):
    """What :func:`undo` did: names restored, names found already restored, problems."""

    restored: int
    problems: list[str]
    already: int = 0


def undo(manifest: str | Path) -> Undone:
    """Restore the names recorded in ``manifest``.

    An entry whose old name exists and whose new name does not was restored before (``undo``
    run twice): it counts as ``already`` restored, not as a problem.

    Returns
    -------
    Undone
        ``(restored, problems, already)``.
    """
    record = json.loads(Path(manifest).read_text())
    restored, already, problems = 0, 0, []
    for item in reversed(record.get("renames", [])):
        old, new = Path(item["old"]), Path(item["new"])
        if old.parent != new.parent:
            problems.append(f"{new}: manifest entry leaves its folder; skipped")
        elif old.exists() and not new.exists():
            already += 1
        elif old.exists():
            problems.append(f"{old} exists; not overwriting it with {new}")
        elif not new.exists():
            problems.append(f"{new} is missing; cannot restore {old.name}")
        else:
            new.rename(old)
            restored += 1
    return Undone(restored, problems, already)

"""Append top-3 predictions to file names safely, with an undo manifest."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
from pathlib import Path
from typing import Sequence

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


def new_name(path: Path, top: Sequence[tuple[str, float]]) -> str:
    """``embryo_017.tif`` + top → ``embryo_017__stage4-0.81_stage5-0.12_stage3-0.04.tif``."""
    suffix = "".join(path.suffixes[-2:]) if path.name.lower().endswith(".ome.tif") else path.suffix
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    tags = "_".join(f"{sanitize(c)}-{p:.2f}" for c, p in top[:3])
    return f"{stem}__{tags}{suffix}"


def plan_renames(rows: Sequence[PredictionRow]) -> list[tuple[Path, Path]]:
    """``(old, new)`` pairs for rows without error; checks target stays in the same folder."""
    plan, targets = [], set()
    for row in rows:
        if row.error or not row.top:
            continue
        old = Path(row.path).absolute()  # not resolve(): rename a symlink, not its target
        name = new_name(old, row.top)
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


def undo(manifest: str | Path) -> tuple[int, list[str]]:
    """Restore the names recorded in ``manifest``; returns ``(restored, problems)``."""
    record = json.loads(Path(manifest).read_text())
    restored, problems = 0, []
    for item in reversed(record.get("renames", [])):
        old, new = Path(item["old"]), Path(item["new"])
        if old.parent != new.parent:
            problems.append(f"{new}: manifest entry leaves its folder; skipped")
        elif old.exists():
            problems.append(f"{old} exists; not overwriting it with {new}")
        elif not new.exists():
            problems.append(f"{new} is missing; cannot restore {old.name}")
        else:
            new.rename(old)
            restored += 1
    return restored, problems

"""Atomic file writes: a reader sees the old file or the complete new one, never half of one.

Every result file of the project goes through :func:`atomic_path`; resumable jobs rely on a
file's presence meaning it is complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "remove_stale", "write_bytes", "write_json", "write_text"]

#: Temporary files are named ``.{final name}.{random}.tmp``: hidden, and never matching a
#: reader's ``*.parquet`` / ``*.json`` pattern.
TMP_SUFFIX = ".tmp"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    The temporary file lives in the same folder (``os.replace`` is atomic only within one file
    system) and ends in ``.tmp``, so no reader globbing ``*.parquet`` ever sees it. Writers that
    append a suffix to a file name (``numpy.savez``) must be given an open file instead. On any
    exception it is removed and ``path`` is left as it was; a process killed mid-write leaves
    it behind, for :func:`remove_stale` to clear when the job resumes.

    Parameters
    ----------
    path : str or Path
        The final file; its parent folder is created when missing.

    Examples
    --------
    >>> with atomic_path(out / "table.parquet") as tmp:      # doctest: +SKIP
    ...     frame.to_parquet(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; return ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any, *, indent: int = 2) -> Path:
    """Write ``data`` as JSON to ``path`` atomically; return ``path``.

    NaN is written as JSON's ``NaN`` literal, as :mod:`json` does.
    """
    return write_text(path, json.dumps(data, indent=indent))


def remove_stale(folder: str | Path) -> list[Path]:
    """Delete temporaries that :func:`atomic_path` left in ``folder`` when a process was killed.

    Only hidden files ending in ``.tmp`` are removed (the names :func:`atomic_path` makes);
    nothing else in ``folder`` is touched. Call it only where no other process is writing.

    Returns
    -------
    list of Path
        The files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.glob(f".*{TMP_SUFFIX}") if p.is_file())
    for p in stale:
        p.unlink(missing_ok=True)
    return stale

"""Atomic file writes: a reader sees the old file or the complete new one, never half of one.

Every result file of the project goes through :func:`atomic_path`; resumable jobs rely on a
file's presence meaning it is complete.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

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
    it behind, for :func:`remove_stale` to clear when the job resumes. The file gets the mode
    any new file gets under the process umask (0644 under 022), not ``mkstemp``'s 0600.

    Parameters
    ----------
    path : str or Path
        The final file; its parent folder is created when missing.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from cellcompare.atomic import atomic_path
    >>> out = Path(tempfile.mkdtemp())
    >>> with atomic_path(out / "table.csv") as tmp:
    ...     _ = tmp.write_text("a,b")
    ...     print([p.name for p in out.iterdir()])
    ['.table.csv....tmp']
    >>> [p.name for p in out.iterdir()], (out / "table.csv").read_text()
    (['table.csv'], 'a,b')

    A failed write leaves the old file as it was, and no temporary file:

    >>> with atomic_path(out / "table.csv") as tmp:
    ...     _ = tmp.write_text("half writ")
    ...     raise RuntimeError("writer failed")
    Traceback (most recent call last):
    ...
    RuntimeError: writer failed
    >>> [p.name for p in out.iterdir()], (out / "table.csv").read_text()
    (['table.csv'], 'a,b')
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _new_temporary(path: Path) -> Path:
    """Create an empty, hidden temporary file beside ``path``, with the process umask's mode.

    ``tempfile.mkstemp`` makes files 0600 whatever the umask, so every result file (renamed
    over its final name) could be read by its owner only; created with mode 0666 here, the
    kernel applies the umask as for any other new file (0644 under the usual 022).
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")  # pragma: no cover


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; return ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as JSON to ``path`` atomically; return ``path``.

    The one JSON writer of the project. NaN and infinities are written as ``null`` (JSON has no
    NaN; :mod:`json` would write a ``NaN`` literal that strict readers refuse); numpy scalars
    and arrays become plain values. Indented by 2, each list of plain values on one line
    (:func:`_dumps`).

    Examples
    --------
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> from cellcompare.atomic import write_json
    >>> path = write_json(Path(tempfile.mkdtemp()) / "m.json", {"loss": float("nan"), "k": [1, 2]})
    >>> json.loads(path.read_text())
    {'loss': None, 'k': [1, 2]}
    """
    return write_text(path, _dumps(_finite(data)))


def _dumps(obj: Any) -> str:
    """``obj`` as JSON indented by 2, each list of plain values (no list or dict in it) on one line.

    A dense confusion row or a sparse ``[true, predicted, count]`` entry then takes one line
    instead of one line per number (~5x fewer bytes at 1,139 classes).
    """
    flat: list[str] = []
    tag = f"flat-{uuid.uuid4().hex}-"  # placeholder of a one-line list; no value can hold it

    def mark(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            if value and not any(isinstance(v, (dict, list, np.ndarray)) for v in value):
                flat.append(json.dumps(value, default=_default, allow_nan=False))
                return f"{tag}{len(flat) - 1}"
            return [mark(v) for v in value]
        return value

    text = json.dumps(mark(obj), indent=2, default=_default, allow_nan=False)
    return re.sub(f'"{tag}(\\d+)"', lambda m: flat[int(m.group(1))], text)


def _finite(value: Any) -> Any:
    """NaN and infinities become null (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


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

"""One extraction per output folder: a lock file naming the host and process that holds it.

Two extractions into one folder would both assemble the same shards. The main process of
:func:`features.run_extraction` takes ``out/.lock`` (created exclusively) and removes it when
done; workers (joblib or Dask) never take it, they only stage images. A lock whose process is
gone (same host, no such pid) is stale and taken over with a warning. A lock held on another
host cannot be checked from here; the message says to delete it if that job is gone.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)
LOCK_NAME = ".lock"


class FolderLockedError(ValueError):
    """Another extraction holds the output folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # someone else's process: it exists
        return True
    return True


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _take(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        json.dump({"host": socket.gethostname(), "pid": os.getpid()}, fh)
    return True


@contextmanager
def folder_lock(folder: Path) -> Iterator[Path]:
    """Hold ``folder/.lock`` for the duration of the block.

    Raises
    ------
    FolderLockedError
        A live process (or one on another host) holds the lock.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> out = Path(tempfile.mkdtemp())
    >>> with folder_lock(out) as lock:
    ...     lock.exists()
    True
    >>> (out / ".lock").exists()
    False
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    while not _take(path):
        holder = _holder(path)
        host, pid = holder.get("host"), holder.get("pid")
        if host == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
            log.warning("%s was left by process %d, which is gone: taking it over", path, pid)
            path.unlink(missing_ok=True)
            continue
        raise FolderLockedError(
            f"{folder} is being written by another extraction (process {pid} on host {host}, "
            f"see {path}); wait for it to finish, or delete {path} if that job is gone")
    try:
        yield path
    finally:
        if _holder(path).get("pid") == os.getpid():
            path.unlink(missing_ok=True)

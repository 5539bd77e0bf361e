"""Per-stage seconds, peak memory and bytes written of a comparison run (``metrics.json`` ``stages``).

A run is a few long stages (extraction, tables, each model's units, results, the report). To
size a machine for a bigger dataset one needs each stage's own cost, not only the total, so
:class:`StageRecorder` measures, for every stage:

* ``seconds``: wall time;
* ``peak_rss_mb``: the largest resident set of the run's process *plus all its child
  processes* (joblib/Dask extraction workers, DataLoader workers), summed, sampled every
  ``interval`` seconds by a background thread (``psutil``; a peak shorter than the interval
  can be missed, so it is a lower bound);
* ``bytes_written``: net bytes added under the output folder (apparent file sizes after the
  stage minus before; files a stage deletes count against it).

A stage entered twice (e.g. one per fold) adds its seconds and bytes and keeps the larger peak.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["STAGE_METHOD", "StageRecorder", "folder_bytes"]

#: How ``stages`` are measured (written to metrics.json beside them).
STAGE_METHOD = ("seconds: wall time; peak_rss_mb: psutil RSS of the run's process plus all its "
                "child processes, summed, sampled every {interval:g} s (a lower bound); "
                "bytes_written: net bytes added under the output folder")


def folder_bytes(folder: str | Path) -> int:
    """Apparent size in bytes of every file under ``folder`` (0 when it does not exist).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.bin").write_bytes(b"x" * 10); (d / "sub").mkdir(); _ = (d / "sub" / "b").write_bytes(b"yy")
    >>> folder_bytes(d), folder_bytes(d / "absent")
    (12, 0)
    """
    total = 0
    stack = [Path(folder)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:  # removed while walking (a worker's temporary file)
                continue
    return total


def _tree_rss() -> int:
    """Bytes resident in this process and all its descendants, summed."""
    import psutil

    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


class _Sampler:
    """Background thread keeping the largest :func:`_tree_rss` seen since :meth:`reset`."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stage-rss", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        self.peak = max(self.peak, _tree_rss())

    def __enter__(self) -> "_Sampler":
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


class StageRecorder:
    """Seconds, peak RSS (process tree) and bytes written under ``out`` per named stage.

    Parameters
    ----------
    out : str or Path
        The run's output folder (bytes written are counted under it).
    interval : float
        Seconds between RSS samples.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> stages = StageRecorder(out, interval=0.01)
    >>> with stages.stage("write"):
    ...     _ = (out / "a.bin").write_bytes(bytes(1000))
    >>> with stages.stage("write"):
    ...     _ = (out / "b.bin").write_bytes(bytes(24))
    >>> record = stages.record()
    >>> record["write"]["bytes_written"], record["write"]["calls"], record["write"]["peak_rss_mb"] > 0
    (1024, 2, True)
    """

    def __init__(self, out: str | Path, interval: float = 0.2) -> None:
        self.out = Path(out)
        self.interval = interval
        self._stages: dict[str, dict[str, Any]] = {}

    @property
    def method(self) -> str:
        """:data:`STAGE_METHOD` with this recorder's interval."""
        return STAGE_METHOD.format(interval=self.interval)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Measure the enclosed block as stage ``name`` (recorded even when it raises)."""
        before = folder_bytes(self.out)
        start = time.perf_counter()
        sampler = _Sampler(self.interval)
        try:
            with sampler:
                yield
        finally:
            entry = self._stages.setdefault(name, {"seconds": 0.0, "peak_rss_mb": 0.0,
                                                   "bytes_written": 0, "calls": 0})
            entry["seconds"] += time.perf_counter() - start
            entry["peak_rss_mb"] = max(entry["peak_rss_mb"], sampler.peak / 2**20)
            entry["bytes_written"] += folder_bytes(self.out) - before
            entry["calls"] += 1

    def record(self) -> dict[str, dict[str, Any]]:
        """``{stage: {seconds, peak_rss_mb, bytes_written, calls}}`` in the order first entered."""
        return {name: dict(entry) for name, entry in self._stages.items()}

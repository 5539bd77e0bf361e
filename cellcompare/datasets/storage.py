"""Dataset roots on object storage (``s3://bucket/prefix`` or any fsspec URL), read lazily.

Opening a remote root lists it once and mirrors it into a local cache folder: small non-image
files (``metadata.csv``, ``load_data.csv``) are copied, every image becomes a sparse
placeholder of its real size and modification time, so the readers scan the mirror like any
folder. An image's bytes are fetched the first time a sample reads it, the files of a sample
concurrently but never more than ``max_concurrency`` transfers at a time per root.

Credentials come from the usual places of the filesystem (for S3: ``AWS_*`` variables,
``~/.aws``); ``storage_options`` passes anything else (``endpoint_url`` of an S3-compatible
server, ``anon: true`` for public buckets). Options are recorded in feature manifests, so keep
secrets out of them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DatasetError
from .imageio import IMAGE_SUFFIXES

__all__ = ["CACHE_ENV", "DEFAULT_CONCURRENCY", "StagedRoot", "StorageError", "is_url"]

logger = logging.getLogger(__name__)

#: Environment variable naming the cache folder (default ``~/.cache/cellcompare``).
CACHE_ENV = "CELLCOMPARE_CACHE"
DEFAULT_CONCURRENCY = 8
#: Non-image files up to this size are copied when the root is opened; larger ones are not.
EAGER_BYTES = 64 * 2**20
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SEMAPHORES: dict[str, threading.BoundedSemaphore] = {}
_SEMAPHORES_LOCK = threading.Lock()


class StorageError(DatasetError):
    """A remote dataset root cannot be listed or one of its files cannot be fetched."""


def is_url(root: Any) -> bool:
    """True when ``root`` is a URL with a scheme (``s3://...``, ``gs://...``, ``memory://...``)."""
    return isinstance(root, str) and bool(_URL.match(root))


@dataclass(frozen=True)
class RemoteFile:
    """One listed object: key relative to the root, size in bytes, modification time (s)."""

    key: str
    size: int
    mtime: float


def _mtime(info: Mapping[str, Any]) -> float:
    for name in ("LastModified", "mtime", "updated", "last_modified", "created"):
        value = info.get(name)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        try:
            return float(value)
        except (TypeError, ValueError):
            continue
    return 0.0


def _semaphore(url: str, size: int) -> threading.BoundedSemaphore:
    with _SEMAPHORES_LOCK:
        return _SEMAPHORES.setdefault(f"{url}#{size}", threading.BoundedSemaphore(size))


class StagedRoot:
    """A local mirror of a remote dataset root whose images are fetched on first read.

    Parameters
    ----------
    url : str
        The root, e.g. ``s3://bucket/prefix``.
    storage_options : mapping, optional
        Keyword arguments of the fsspec filesystem (``{"client_kwargs": {"endpoint_url": ...}}``).
    cache_dir : str or Path, optional
        Where mirrors live (default ``$CELLCOMPARE_CACHE`` or ``~/.cache/cellcompare``); this
        root's mirror is ``{cache_dir}/remote/{sha256(url)[:16]}/tree``.
    max_concurrency : int
        Most transfers running at once for this root (per process).

    Examples
    --------
    An in-memory fsspec root stands in for a bucket here; ``s3://bucket/rxrx1`` is opened the
    same way. Opening copies the small ``metadata.csv`` and leaves a placeholder of the image's
    size; reading a sample fetches the image's bytes once:

    >>> import tempfile
    >>> import fsspec
    >>> from cellcompare.datasets.storage import StagedRoot
    >>> fsspec.filesystem("memory").pipe({"/doctest-root/metadata.csv": b"site_id,well",
    ...                                   "/doctest-root/A01.png": b"fake" * 16})
    >>> staged = StagedRoot("memory://doctest-root", cache_dir=tempfile.mkdtemp()).sync()
    >>> sorted(p.name for p in staged.local.iterdir())
    ['A01.png', 'metadata.csv']
    >>> (staged.local / "metadata.csv").read_text()
    'site_id,well'
    >>> image = staged.local / "A01.png"
    >>> image.stat().st_size, set(image.read_bytes())   # a sparse placeholder: zeros
    (64, {0})
    >>> staged.fetch([image]), image.read_bytes()[:8], staged.fetch([image])
    (1, b'fakefake', 0)
    >>> staged.remote_path(image)
    'memory://doctest-root/A01.png'
    >>> fsspec.filesystem("memory").rm("/doctest-root", recursive=True)
    """

    def __init__(self, url: str, *, storage_options: Mapping[str, Any] | None = None,
                 cache_dir: str | Path | None = None, max_concurrency: int = DEFAULT_CONCURRENCY) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        import fsspec  # only remote roots need it

        self.url = url.rstrip("/")
        self.max_concurrency = int(max_concurrency)
        try:
            self.fs, self.prefix = fsspec.core.url_to_fs(self.url, **dict(storage_options or {}))
        except (ValueError, ImportError) as exc:
            raise StorageError(f"cannot open dataset root {self.url}: {exc}") from exc
        base = Path(cache_dir or os.environ.get(CACHE_ENV) or "~/.cache/cellcompare").expanduser()
        folder = base / "remote" / hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self.local = folder / "tree"
        self._fetched = folder / "fetched"
        self._files: dict[str, RemoteFile] = {}
        self._folder = folder

    # -- listing ---------------------------------------------------------------------------
    def _list(self) -> list[RemoteFile]:
        try:
            found = self.fs.find(self.prefix, detail=True)
        except (OSError, PermissionError) as exc:
            raise StorageError(f"cannot list dataset root {self.url}: {exc}") from exc
        files = []
        for name, info in sorted(found.items()):
            if info.get("type", "file") != "file":
                continue
            key = name[len(self.prefix):].lstrip("/") if name.startswith(self.prefix) else name
            if key:
                files.append(RemoteFile(key=key, size=int(info.get("size") or 0), mtime=_mtime(info)))
        if not files:
            raise StorageError(f"dataset root {self.url} holds no files (or does not exist)")
        return files

    def sync(self) -> StagedRoot:
        """List the root and bring the mirror up to date (no image bytes are transferred).

        Returns
        -------
        StagedRoot
            ``self``, with :attr:`local` ready to be scanned by a reader.
        """
        self.local.mkdir(parents=True, exist_ok=True)
        (self._folder / "source.txt").write_text(self.url + "\n")
        files = self._list()
        self._files = {f.key: f for f in files}
        eager, large = [], []
        for item in files:
            path = self.local / item.key
            if self._current(path, item):
                continue
            if Path(item.key).suffix.lower() in IMAGE_SUFFIXES:
                self._placeholder(path, item)
            elif item.size <= EAGER_BYTES:
                eager.append(item)
            else:
                large.append(item.key)
        self._download(eager)
        if large:
            logger.info("%s: %d non-image files over %d MiB are not mirrored: %s", self.url,
                        len(large), EAGER_BYTES // 2**20, ", ".join(large[:5]))
        logger.info("%s: %d files listed, mirrored in %s (images are fetched on first read)",
                    self.url, len(files), self.local)
        return self

    def _marker(self, key: str) -> Path:
        return self._fetched / key

    @staticmethod
    def _current(path: Path, item: RemoteFile) -> bool:
        """The local file has the remote size and time (a placeholder or a fetched copy)."""
        try:
            stat = path.stat()
        except OSError:
            return False
        return stat.st_size == item.size and abs(stat.st_mtime - item.mtime) < 1e-3

    def _placeholder(self, path: Path, item: RemoteFile) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._marker(item.key).unlink(missing_ok=True)
        with open(path, "wb") as fh:
            fh.truncate(item.size)  # sparse: no disk blocks until fetched
        os.utime(path, (item.mtime, item.mtime))

    # -- fetching --------------------------------------------------------------------------
    def _key(self, path: str | Path) -> str | None:
        try:
            return Path(path).resolve().relative_to(self.local.resolve()).as_posix()
        except ValueError:
            return None

    def _get(self, item: RemoteFile) -> None:
        path = self.local / item.key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        remote = f"{self.prefix.rstrip('/')}/{item.key}"
        with _semaphore(self.url, self.max_concurrency):
            try:
                self.fs.get_file(remote, str(tmp))
            except (OSError, PermissionError) as exc:
                tmp.unlink(missing_ok=True)
                raise StorageError(f"cannot fetch {self.url}/{item.key}: {exc}") from exc
        if tmp.stat().st_size != item.size:
            got = tmp.stat().st_size
            tmp.unlink(missing_ok=True)
            raise StorageError(f"fetched {self.url}/{item.key} has {got} bytes; the listing said "
                               f"{item.size} (changed while reading? open the dataset again)")
        os.utime(tmp, (item.mtime, item.mtime))
        os.replace(tmp, path)
        marker = self._marker(item.key)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()

    def _download(self, items: list[RemoteFile]) -> None:
        if not items:
            return
        if len(items) == 1:
            self._get(items[0])
            return
        with ThreadPoolExecutor(max_workers=min(len(items), self.max_concurrency)) as pool:
            for future in [pool.submit(self._get, item) for item in items]:
                future.result()

    def fetch(self, paths: Iterable[str | Path]) -> int:
        """Make sure the mirror holds the bytes of ``paths`` (local mirror paths).

        Parameters
        ----------
        paths : iterable of str or Path
            Files under :attr:`local`; paths outside it are left alone.

        Returns
        -------
        int
            How many files were transferred.
        """
        todo = []
        for path in paths:
            key = self._key(path)
            if key is None or key not in self._files or self._marker(key).exists():
                continue
            todo.append(self._files[key])
        self._download(todo)
        return len(todo)

    __call__ = fetch

    def remote_path(self, path: str | Path) -> str:
        """The URL of a mirror path (for messages and provenance)."""
        key = self._key(path)
        return f"{self.url}/{key}" if key is not None else str(path)

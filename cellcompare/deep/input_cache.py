"""The decoded input cache of a run: every site read once, resized, kept in one memory-mapped array.

``InputCache.build`` reads each image of a dataset (:func:`deep.inputs.sample_input`), resizes it
to the model's ``image_size`` exactly as :class:`deep.data.ImageTensorDataset` would
(``resize: pad | crop``), and writes, in ``folder/<settings key>/``:

- ``inputs.npy``: ``(N, C, S, S)`` in the settings' dtype (float16 by default), memory-mapped on
  reading, so every fold and every model with the same settings reads the same pages;
- ``sums.npy``: float64 ``(N, 3, C)``: per image the channel sums of the pixels and of their
  squares, and the pixel count, of the image *before* resizing, so the training fold's channel
  statistics (:func:`deep.data.channel_stats`) are those of the uncached path, bit for bit;
- ``inputs.json`` last, atomically: the settings, the sample ids with a digest of each one's
  source files, the array shapes and the file sizes. A folder without it is never trusted; a
  file whose size or header disagrees with it is rebuilt with a warning naming the file.

Size: ``N * C * S * S * 2`` bytes as float16 (RxRx1, 125,510 sites of 6 x 256 x 256: 98.7 GB;
``dtype: float32`` doubles it and keeps every value exact).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cellcompare import atomic
from cellcompare.progress import progress_bar

from .data import RESIZERS, as_chw, image_sums
from .errors import ImageInputError
from .inputs import sample_input

__all__ = ["CachedImages", "InputCache", "InputSettings", "CACHE_DTYPES"]

log = logging.getLogger(__name__)
_CACHE_FORMAT = 1
#: Storage dtypes of the cache (``DeepConfig.input_cache``; ``none`` there reads the PNGs).
CACHE_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class InputSettings:
    """What a decoded input cache depends on (its key).

    Examples
    --------
    >>> a = InputSettings(image_size=32, resize="pad", channels=(0, 3))
    >>> a.key() == InputSettings(32, "pad", (0, 3), "float16").key(), a.key() == a.replace_size(64).key()
    (True, False)
    """

    image_size: int
    resize: str = "pad"
    channels: tuple[int, ...] | None = None
    dtype: str = "float16"

    def __post_init__(self) -> None:
        if self.resize not in RESIZERS:
            raise ImageInputError(f"resize must be one of {sorted(RESIZERS)}, found {self.resize!r}")
        if self.dtype not in CACHE_DTYPES:
            raise ImageInputError(f"input cache dtype must be one of {CACHE_DTYPES}, found {self.dtype!r}")

    @classmethod
    def of(cls, config: Any, channels: Sequence[int] | None = None) -> InputSettings:
        """The settings of a ``DeepConfig`` (``image_size``, ``resize``, ``input_cache``)."""
        return cls(int(config.image_size), str(config.resize),
                   None if channels is None else tuple(int(c) for c in channels), str(config.input_cache))

    def replace_size(self, image_size: int) -> InputSettings:
        """These settings at another ``image_size``."""
        return InputSettings(int(image_size), self.resize, self.channels, self.dtype)

    def key(self) -> str:
        text = json.dumps({"format": _CACHE_FORMAT, **asdict(self)}, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def source_digest(dataset: Any, sample_id: str) -> str:
    """A digest of the files a sample is read from (path, size, mtime), or ``""`` when unknown."""
    source = getattr(dataset, "source", None)
    position = getattr(dataset, "_position", {}).get(sample_id)
    if source is None or position is None:
        return ""
    return hashlib.sha256(json.dumps(source(position), sort_keys=True, default=str).encode()).hexdigest()[:16]


class InputCache:
    """Decoded, resized sites in one memory-mapped ``inputs.npy`` (see the module docstring).

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from cellcompare.datasets import Sample
    >>> class Two:  # anything with ids and get(sample_id) -> Sample
    ...     ids = ["a", "b"]
    ...     def get(self, sid):
    ...         return Sample(id=sid, image=np.full((2, 8, 4), 255 if sid == "b" else 0, np.uint8))
    >>> cache = InputCache.build(tempfile.mkdtemp(), Two(), InputSettings(4), progress=False)
    >>> cache.inputs.shape, cache.inputs.dtype.name
    ((2, 2, 4, 4), 'float16')
    >>> images = cache.images(["b"])
    >>> float(images[0].max()), images.pixel_sums([0])[2].tolist()   # 32 pixels before resizing
    (1.0, [32.0, 32.0])
    """

    INPUTS = "inputs.npy"
    SUMS = "sums.npy"
    META = "inputs.json"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / self.META
        if not meta_path.is_file():
            raise ImageInputError(f"{self.folder} holds no finished input cache ({self.META} missing)")
        self.meta = json.loads(meta_path.read_text())
        self.settings = InputSettings(**{**self.meta["settings"], "channels": _tuple(self.meta["settings"]["channels"])})
        for name in (self.INPUTS, self.SUMS):
            _check_file(self.folder / name, self.meta["files"][name])
        self.inputs = np.load(self.folder / self.INPUTS, mmap_mode="r")
        self.sums = np.load(self.folder / self.SUMS, mmap_mode="r")
        self.sample_ids = [str(s) for s in self.meta["sample_ids"]]
        self._position = {sid: i for i, sid in enumerate(self.sample_ids)}

    @property
    def nbytes(self) -> int:
        """Bytes of the cache's files on disk (arrays and ``inputs.json``)."""
        return sum(int(f["bytes"]) for f in self.meta["files"].values()) + (self.folder / self.META).stat().st_size

    def images(self, sample_ids: Sequence[str]) -> CachedImages:
        """The cached inputs of ``sample_ids``, in that order (a lazy sequence for ``DeepClassifier``).

        Raises
        ------
        ImageInputError
            A sample is not in the cache.
        """
        missing = [str(s) for s in sample_ids if str(s) not in self._position]
        if missing:
            raise ImageInputError(f"input cache {self.folder} lacks {len(missing)} samples: {missing[:5]}")
        return CachedImages(self.folder, [self._position[str(s)] for s in sample_ids])

    def covers(self, dataset: Any, sample_ids: Sequence[str]) -> bool:
        """Whether every one of ``sample_ids`` is cached from its current files."""
        sources = dict(zip(self.sample_ids, self.meta["sources"]))
        return all(sources.get(str(s)) == source_digest(dataset, str(s)) for s in sample_ids)

    @classmethod
    def build(cls, folder: str | Path, dataset: Any, settings: InputSettings, *,
              sample_ids: Sequence[str] | None = None, jobs: int = 1, progress: bool = True) -> InputCache:
        """Decode (or reopen) the input cache of ``dataset`` under ``folder/<settings key>/``.

        A finished cache holding every one of ``sample_ids`` from unchanged files is reused; a
        damaged one (a file of the wrong size, a header that disagrees with ``inputs.json``) is
        rebuilt with a warning naming the file.

        Parameters
        ----------
        folder : str or Path
            Parent folder of the caches (a run's ``{output}/inputs``).
        dataset : datasets.ImageDataset
            ``get(sample_id)`` returns a ``Sample`` (``ids`` when ``sample_ids`` is None).
        settings : InputSettings
            Size, resize mode, channel positions and storage dtype.
        sample_ids : sequence of str, optional
            The images to cache (default: every sample of ``dataset``).
        jobs : int
            Threads decoding images (PNG decoding and resizing release the GIL).
        progress : bool
            Show a progress bar (terminal only).

        Raises
        ------
        ImageInputError
            An image cannot be read (names the sample and its files) or has another channel count.
        """
        ids = [str(s) for s in (dataset.ids if sample_ids is None else sample_ids)]
        target = Path(folder) / settings.key()
        if (target / cls.META).is_file():
            try:
                cache = cls(target)
            except (OSError, ValueError) as exc:
                log.warning("input cache %s is damaged (%s); building it again", target, exc)
            else:
                if cache.covers(dataset, ids):
                    log.info("reusing %d decoded sites in %s", len(cache.sample_ids), target)
                    return cache
                log.warning("input cache %s was built for other images or files; building it again", target)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        _write(target, dataset, ids, settings, jobs=jobs, progress=progress)
        return cls(target)


class CachedImages(Sequence):
    """Lazy sequence of cached ``(C, S, S)`` inputs as float32 (stored float16 or float32), by position.

    Picklable by path: a DataLoader worker opens its own memory map instead of copying the array.
    ``pixel_sums`` gives :func:`deep.data.channel_stats` the full-resolution sums stored at build.
    """

    def __init__(self, folder: str | Path, positions: Sequence[int]) -> None:
        self.folder = Path(folder)
        self.positions = np.asarray(positions, dtype=np.int64)
        self._inputs: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        if self._inputs is None:
            self._inputs = np.load(self.folder / InputCache.INPUTS, mmap_mode="r")
        return self._inputs[self.positions[i]].astype(np.float32)  # one copy, writable for torch

    def __getstate__(self) -> dict:
        return {"folder": self.folder, "positions": self.positions, "_inputs": None}

    def pixel_sums(self, indices: Sequence[int]) -> np.ndarray:
        """float64 ``(3, C)``: channel sums of pixels, of squares, and pixel counts of ``indices``.

        Accumulated image by image in ``indices`` order (``np.cumsum``), as
        :func:`deep.data.channel_stats` adds them when it reads the images.
        """
        sums = np.load(self.folder / InputCache.SUMS, mmap_mode="r")
        rows = np.asarray(sums[self.positions[np.asarray(indices, dtype=np.int64)]])
        if not len(rows):
            raise ImageInputError("cannot compute channel statistics on zero images")
        return np.cumsum(rows, axis=0)[-1]


def _decode(dataset: Any, sid: str, settings: InputSettings) -> tuple[np.ndarray, np.ndarray]:
    """One sample resized as the dataset class does it, and its full-resolution sums ``(3, C)``."""
    try:
        sample = dataset.get(sid)
        array = as_chw(sample_input(sample, settings.channels), 0)
    except (OSError, ValueError, IndexError) as exc:  # DatasetError is a ValueError
        paths = getattr(dataset, "paths_of", None)
        where = "" if paths is None else f" ({', '.join(map(str, paths(dataset._position[sid])))})"
        raise ImageInputError(f"cannot cache sample {sid!r}{where}: {exc}") from exc
    resized = RESIZERS[settings.resize](torch.from_numpy(np.ascontiguousarray(array)), settings.image_size)
    return resized.numpy(), np.stack(image_sums(array))


def _write(target: Path, dataset: Any, ids: list[str], settings: InputSettings, *, jobs: int,
           progress: bool) -> None:
    """Write ``inputs.npy`` and ``sums.npy`` image by image, then ``inputs.json`` (last)."""
    if not ids:
        raise ImageInputError("an input cache needs at least one image")
    first, first_sums = _decode(dataset, ids[0], settings)
    shape = (len(ids), *first.shape)
    files = {}
    with atomic.atomic_path(target / InputCache.INPUTS) as tmp_inputs, \
            atomic.atomic_path(target / InputCache.SUMS) as tmp_sums:
        inputs = np.lib.format.open_memmap(tmp_inputs, mode="w+", dtype=settings.dtype, shape=shape)
        sums = np.lib.format.open_memmap(tmp_sums, mode="w+", dtype=np.float64,
                                         shape=(len(ids), *first_sums.shape))

        def put(i: int) -> None:
            image, image_sum = (first, first_sums) if i == 0 else _decode(dataset, ids[i], settings)
            if image.shape != shape[1:]:
                raise ImageInputError(f"sample {ids[i]!r} gives an input of shape {image.shape}; the "
                                      f"cache holds {shape[1:]} (another channel count?)")
            inputs[i] = image
            sums[i] = image_sum

        with ThreadPoolExecutor(max(1, int(jobs))) as pool:
            for _ in progress_bar(pool.map(put, range(len(ids))), total=len(ids), desc="decoding sites",
                                  unit="image", enabled=progress, leave=False):
                pass
        for name, array in ((InputCache.INPUTS, inputs), (InputCache.SUMS, sums)):
            array.flush()
            files[name] = {"shape": list(array.shape), "dtype": array.dtype.name}
        del inputs, sums
    for name in files:
        files[name]["bytes"] = (target / name).stat().st_size
    atomic.write_json(target / InputCache.META, {  # last: marks the cache finished
        "settings": asdict(settings), "sample_ids": ids, "files": files,
        "sources": [source_digest(dataset, sid) for sid in ids]})
    log.info("decoded %d sites to %s of %s (%.1f MB) into %s", len(ids), settings.dtype,
             "x".join(map(str, shape[1:])), sum(f["bytes"] for f in files.values()) / 1e6, target)


def _check_file(path: Path, record: dict) -> None:
    """Raise ``ValueError`` naming ``path`` when its size or ``.npy`` header disagrees with ``record``."""
    if not path.is_file():
        raise ValueError(f"{path} is missing")
    size = path.stat().st_size
    if size != int(record["bytes"]):
        raise ValueError(f"{path} has {size} bytes, {record['bytes']} were written")
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh)
    if list(shape) != list(record["shape"]) or np.dtype(dtype).name != record["dtype"]:
        raise ValueError(f"{path} holds {dtype} {shape}, {record['dtype']} {record['shape']} were written")


def _tuple(value: Any) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(v) for v in value)

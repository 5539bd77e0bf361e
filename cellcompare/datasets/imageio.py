"""Decode image files to ``(C, H, W)`` arrays; every failure becomes an UnreadableImageError.

TIFF goes through tifffile (multi-page and multi-channel, 8/16/32-bit, palette images with a
colour map), PNG and JPEG through Pillow. Both check the size an image declares in its header
against ``max_pixels`` before any pixel is decoded, so a small file that declares a huge image
(a decompression bomb, or a corrupt header) is refused instead of exhausting memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from .errors import ImageTooLargeError, UnreadableImageError

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_SUFFIXES", "TIFF_SUFFIXES", "check_pixel_limit",
           "is_image_file", "probe_image", "read_image"]

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = TIFF_SUFFIXES + (".png", ".jpg", ".jpeg")
#: Most pixel values (channels x height x width) one file may declare: 3x Pillow's
#: ``MAX_IMAGE_PIXELS`` (Pillow's limit for an RGB image), 0.5 GiB as uint16.
DEFAULT_MAX_PIXELS = 3 * 89_478_485


def check_pixel_limit(shape: tuple[int, ...], path: str | Path, max_pixels: int | None) -> None:
    """Raise :class:`ImageTooLargeError` when a declared ``(C, H, W)`` exceeds ``max_pixels``.

    Parameters
    ----------
    shape : tuple of int
        ``(C, H, W)`` read from the file's header.
    path : str or Path
        The file, named in the message.
    max_pixels : int or None
        Limit on ``C * H * W``; None disables the check.
    """
    values = int(np.prod(shape, dtype=np.int64))
    if max_pixels is not None and values > max_pixels:
        raise ImageTooLargeError(
            f"image {path} declares {' x '.join(map(str, shape))} (C x H x W) = {values:,} pixel "
            f"values, over the limit of {max_pixels:,}; if the file is genuine, raise "
            f"dataset.options.max_pixels")


def is_image_file(path: Path) -> bool:
    """True when ``path`` is a file with a supported image suffix (case-insensitive)."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _pil_layout(mode: str) -> tuple[int, np.dtype]:
    """Channel count and numpy dtype Pillow will produce for a mode."""
    table = {
        "1": (1, np.dtype(bool)),
        "L": (1, np.dtype(np.uint8)),
        "P": (3, np.dtype(np.uint8)),
        "LA": (2, np.dtype(np.uint8)),
        "RGB": (3, np.dtype(np.uint8)),
        "RGBA": (4, np.dtype(np.uint8)),
        "I;16": (1, np.dtype(np.uint16)),
        "I;16B": (1, np.dtype(np.uint16)),
        "I": (1, np.dtype(np.uint16)),  # 16-bit PNGs open as "I" in some Pillow versions
        "F": (1, np.dtype(np.float32)),
    }
    if mode not in table:
        raise KeyError(mode)
    return table[mode]


def _to_chw(array: np.ndarray, axes: str) -> np.ndarray:
    """Reorder a tifffile array with series ``axes`` to ``(C, H, W)``."""
    if axes.endswith("S") and array.ndim >= 3:
        array = np.moveaxis(array, -1, 0)
    if array.ndim == 2:
        return array[None]
    return array.reshape((-1,) + array.shape[-2:])


def _apply_colormap(array: np.ndarray, colormap: np.ndarray) -> np.ndarray:
    """Palette TIFF: map indices through the colour map (grey maps give one channel)."""
    colormap = np.asarray(colormap)
    if np.array_equal(colormap[0], colormap[1]) and np.array_equal(colormap[0], colormap[2]):
        return colormap[0][array]
    return np.moveaxis(colormap[:, array], 0, -1)


def _tiff_meta(tif: tifffile.TiffFile) -> tuple[np.ndarray | None, str]:
    page = tif.pages[0]
    palette = page.photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None
    return (page.colormap if palette else None), tif.series[0].axes


def _check_extents(tif: tifffile.TiffFile, path: Path) -> None:
    """Raise when a page's pixel data runs past the end of the file (a truncated TIFF).

    tifffile only warns on some truncations; a warnings filter would be process-global state
    (not thread-safe in a server), so the strip/tile extents are checked explicitly instead.
    """
    size = path.stat().st_size
    for index, page in enumerate(tif.pages):
        for offset, count in zip(page.dataoffsets, page.databytecounts):
            if offset + count > size:
                raise OSError(f"page {index} pixel data ends at byte {offset + count}, "
                              f"but the file has only {size} bytes (truncated)")


def _read_tiff(path: Path) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        _check_extents(tif, path)
        colormap, axes = _tiff_meta(tif)
        array = tif.series[0].asarray()
    if colormap is not None:
        array = _apply_colormap(array, colormap)
        axes = axes if array.ndim == len(axes) else axes + "S"
    return _to_chw(array, axes)


def _read_pil(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        if im.mode == "P":
            im = im.convert("RGB")
        array = np.asarray(im)
    if array.dtype == np.int32 and array.size and 0 <= array.min() and array.max() <= 65535:
        array = array.astype(np.uint16)
    if array.ndim == 2:
        return array[None]
    return np.moveaxis(array, -1, 0)


def read_image(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read one image file as ``(C, H, W)`` in its native dtype.

    Parameters
    ----------
    path : str or Path
        A ``.tif``/``.tiff`` (any number of pages or samples per pixel), ``.png`` or ``.jpg``.
    max_pixels : int or None
        Refuse a file whose header declares more than this many pixel values (``C * H * W``),
        before decoding it. None disables the check.

    Returns
    -------
    np.ndarray
        ``(C, H, W)``; pages and samples-per-pixel become channels.

    Raises
    ------
    UnreadableImageError
        The file is missing, truncated, corrupt or of an unsupported kind.
    ImageTooLargeError
        The header declares more than ``max_pixels`` pixel values.
    """
    path = Path(path)
    try:
        if max_pixels is not None:
            check_pixel_limit(_probe(path)[0], path, max_pixels)
        if path.suffix.lower() in TIFF_SUFFIXES:
            array = _read_tiff(path)
        else:
            array = _read_pil(path)
    except UnreadableImageError:
        raise
    except Exception as exc:  # decoders raise many unrelated types; wrap them all
        raise UnreadableImageError(
            f"cannot decode image {path}: {type(exc).__name__}: {exc} "
            f"(expected a readable {path.suffix or 'image'} file)"
        ) from exc
    if array.ndim != 3 or 0 in array.shape:
        raise UnreadableImageError(f"image {path} decoded to shape {array.shape}; expected (C, H, W)")
    return np.ascontiguousarray(array)


def _probe_tiff(path: Path) -> tuple[tuple[int, int, int], np.dtype]:
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        shape, axes, dtype = tuple(series.shape), series.axes, series.dtype
        colormap, _ = _tiff_meta(tif)
    if colormap is not None:
        grey = np.array_equal(colormap[0], colormap[1]) and np.array_equal(colormap[0], colormap[2])
        shape, dtype = (shape if grey else shape + (3,)), colormap.dtype
        axes = axes if grey else axes + "S"
    if axes.endswith("S") and len(shape) >= 3:
        shape = (shape[-1],) + shape[:-1]
    channels = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return (channels, shape[-2], shape[-1]), np.dtype(dtype)


def _probe(path: Path) -> tuple[tuple[int, int, int], np.dtype]:
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _probe_tiff(path)
    with Image.open(path) as im:
        channels, dtype = _pil_layout(im.mode)
        return (channels, im.size[1], im.size[0]), dtype


def probe_image(path: str | Path) -> tuple[tuple[int, int, int], np.dtype]:
    """Read only the header of an image: its ``(C, H, W)`` shape and dtype.

    Parameters
    ----------
    path : str or Path
        Image file.

    Returns
    -------
    shape : tuple of int
        ``(C, H, W)`` that :func:`read_image` will return.
    dtype : np.dtype
        dtype that :func:`read_image` will return.

    Raises
    ------
    UnreadableImageError
        The header cannot be parsed (empty, truncated header, not an image).
    """
    path = Path(path)
    try:
        return _probe(path)
    except Exception as exc:
        raise UnreadableImageError(
            f"cannot read the header of image {path}: {type(exc).__name__}: {exc}"
        ) from exc

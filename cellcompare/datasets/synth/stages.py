"""Synthetic developmental stages: one elongated embryo per 16-bit TIF, in class folders."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi

from cellcompare.progress import progress_bar

from .describe import ClassDifference, write_class_differences
from .shapes import acquire, draw_blobs, illumination_field

__all__ = ["STAGES_GROUP_PATTERN", "StageStyle", "make_stages", "render_embryo", "stage_styles"]

logger = logging.getLogger(__name__)

STAGES_GROUP_PATTERN = r"^(b\d+)-"
"""``group_pattern`` for ``open_dataset`` that recovers the imaging batch from the file names."""


@dataclass(frozen=True)
class StageStyle:
    """Parameters of one ordered stage (``progress`` 0 = first stage, 1 = last)."""

    progress: float
    furrows: int
    furrow_depth: float
    stripes: int
    granule_count: int
    granule_sigma: float
    length: float


def stage_styles(classes: int) -> dict[str, StageStyle]:
    """Stage parameters, changing monotonically from ``stage1`` to ``stage{classes}``."""
    styles = {}
    for k in range(classes):
        t = k / (classes - 1) if classes > 1 else 0.0
        styles[f"stage{k + 1}"] = StageStyle(
            progress=round(t, 4), furrows=int(round(10 * t)), furrow_depth=round(0.16 * t, 4),
            stripes=0 if k == 0 else int(round(3 + 11 * t)), granule_count=int(150 + 650 * t),
            granule_sigma=round(5.0 - 3.0 * t, 3), length=round(0.72 - 0.06 * t, 4))
    return styles


def _describe(name: str, s: StageStyle) -> ClassDifference:
    lines = (
        f"Outline: {s.furrows} segmental constrictions of depth {s.furrow_depth:.0%} of the half-width; "
        f"embryo length {s.length:.0%} of the image width.",
        f"Internal pattern: {s.stripes} transverse bright stripes"
        f"{' (none: uniform yolk)' if s.stripes == 0 else ''}.",
        f"Granules (nuclei): about {s.granule_count} of radius {s.granule_sigma:.1f} px "
        f"(later stages: more, smaller).",
    )
    return ClassDifference(name=name, lines=lines, params=asdict(s))


def _embryo_frame(shape: tuple[int, int], s: StageStyle, rng: np.random.Generator):
    """Object coordinates (u along the long axis, v across) of every pixel, both in [-1, 1]."""
    h, w = shape
    half_len = 0.5 * w * s.length * rng.lognormal(0, 0.03)
    half_wid = 0.27 * h * rng.lognormal(0, 0.04)
    angle = rng.uniform(-0.2, 0.2) + (np.pi if rng.random() < 0.5 else 0.0)
    cy, cx = h / 2 + rng.normal(0, 0.02 * h), w / 2 + rng.normal(0, 0.02 * w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    u = (dx * np.cos(angle) + dy * np.sin(angle)) / half_len
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / half_wid
    return u, v, half_wid, (cy, cx, angle, half_len)


def render_embryo(shape: tuple[int, int], s: StageStyle, rng: np.random.Generator,
                  gain: float = 1.0) -> np.ndarray:
    """Draw one embryo of stage ``s`` on a background with debris.

    Returns
    -------
    np.ndarray
        uint16 ``(H, W)``.
    """
    u, v, half_wid, (cy, cx, angle, half_len) = _embryo_frame(shape, s, rng)
    uc = np.clip(u, -1, 1)
    profile = np.sqrt(1 - uc**2) * (1 - s.furrow_depth * (0.5 - 0.5 * np.cos(2 * np.pi * s.furrows * (uc + 1) / 2)))
    inside = (np.abs(v) <= profile) & (np.abs(u) <= 1)
    edge = np.clip((profile - np.abs(v)) * half_wid, 0, None)
    body = 0.22 + 0.08 * (1 - uc) / 2  # brighter anterior
    if s.stripes:
        phase = rng.uniform(-0.1, 0.1)
        body = body + 0.22 * np.clip(np.cos(np.pi * s.stripes * (uc + phase)), 0, None) ** 4
    signal = inside * (body + 0.2 * np.exp(-edge / 3.0))
    along = rng.uniform(-0.95, 0.95, s.granule_count)
    across = rng.uniform(-0.85, 0.85, s.granule_count) * np.sqrt(1 - along**2)
    rows = cy + along * half_len * np.sin(angle) + across * half_wid * np.cos(angle)
    cols = cx + along * half_len * np.cos(angle) - across * half_wid * np.sin(angle)
    granules = draw_blobs(shape, np.stack([rows, cols], 1), s.granule_sigma,
                          rng.uniform(0.1, 0.2, s.granule_count))
    signal = ndi.gaussian_filter(signal, 1.0) + granules * inside + _debris(shape, rng)
    signal = signal * illumination_field(shape, rng, strength=0.25) * gain + 0.03
    return acquire(signal, rng, photons=3000.0, read_noise=0.003, max_value=65535)


def _debris(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Out-of-focus specks and short fibres scattered over the field."""
    n = rng.integers(4, 14)
    points = np.stack([rng.uniform(0, shape[0], n), rng.uniform(0, shape[1], n)], 1)
    specks = draw_blobs(shape, points, float(rng.uniform(1.5, 4)), rng.uniform(0.1, 0.4, n))
    fibres = np.zeros(shape, np.float32)
    for _ in range(rng.integers(1, 4)):
        y0, x0 = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        ang, length = rng.uniform(0, np.pi), rng.uniform(20, 80)
        t = np.linspace(0, length, int(length))
        r = np.clip((y0 + t * np.sin(ang)).astype(int), 0, shape[0] - 1)
        c = np.clip((x0 + t * np.cos(ang)).astype(int), 0, shape[1] - 1)
        fibres[r, c] = rng.uniform(0.2, 0.5)
    return specks + ndi.gaussian_filter(fibres, 1.0) * 2


def make_stages(out: str | Path, *, classes: int = 5, per_class: int = 10, seed: int = 0,
                size: tuple[int, int] = (420, 1110), batches: int = 2) -> Path:
    """Write synthetic embryo stages as class folders of 16-bit grayscale TIFs.

    Parameters
    ----------
    out : str or Path
        Output folder (created): ``{out}/stage{k}/b{batch}-{i:03d}.tif``.
    classes : int
        Number of ordered stages.
    per_class : int
        Images per stage.
    seed : int
        Seed; the same arguments give byte-identical files.
    size : tuple of int
        ``(H, W)`` of each image.
    batches : int
        Imaging batches (a gain change each); the batch is in the file name
        (group with ``group_pattern=STAGES_GROUP_PATTERN``).

    Returns
    -------
    Path
        ``out``, also holding ``CLASS_DIFFERENCES.md`` and ``class_differences.json``.
    """
    if classes < 1 or per_class < 1 or batches < 1 or min(size) < 32:
        raise ValueError(f"need classes, per_class, batches >= 1 and size >= 32; got "
                         f"{classes=}, {per_class=}, {batches=}, {size=}")
    out = Path(out)
    styles = stage_styles(classes)
    gains = np.random.default_rng([seed, 2000]).lognormal(0, 0.1, batches)
    jobs = [(k, name, i) for k, name in enumerate(styles) for i in range(per_class)]
    for k, name, i in progress_bar(jobs, desc="stage images", leave=False):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        batch = i % batches
        rng = np.random.default_rng([seed, k, i])
        image = render_embryo(tuple(size), styles[name], rng, gain=float(gains[batch]))
        tifffile.imwrite(folder / f"b{batch + 1}-{i:03d}.tif", image, photometric="minisblack")
    write_class_differences(out, [_describe(n, s) for n, s in styles.items()],
                            "True differences between the synthetic developmental stages")
    logger.info("wrote %d embryo images to %s", len(jobs), out)
    return out

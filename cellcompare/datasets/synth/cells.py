"""Draw one synthetic Cell Painting site: true nuclei/cells and six channel signals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from .shapes import draw_blobs, paint_ellipses, smooth_noise

__all__ = ["CellStyle", "Layout", "draw_channels", "place_cells"]

REFERENCE_SIZE = 512
NUCLEUS_RADIUS = 12.0  # equivalent radius of the average nucleus at 512 px


@dataclass(frozen=True)
class CellStyle:
    """Per-class morphology and staining parameters (1.0 = the average class)."""

    nuclear_area: float = 1.0
    axis_ratio: float = 0.78
    chromatin_scale: float = 1.0
    er_scale: float = 1.0
    mito_size: float = 1.0
    mito_density: float = 1.0
    rna_intensity: float = 1.0
    golgi_intensity: float = 1.0
    actin_intensity: float = 1.0


@dataclass
class Layout:
    """True objects of one site: label images and per-nucleus geometry."""

    nuclei: np.ndarray
    cells: np.ndarray
    centers: np.ndarray
    radii: np.ndarray
    nucleus_radius: np.ndarray
    edge_distance: np.ndarray
    nucleus_distance: np.ndarray
    scale: float


def _length_scale(size: int) -> float:
    # lengths shrink more slowly than the image so a 128 px site keeps resolvable nuclei
    return (size / REFERENCE_SIZE) ** 0.4


def _sample_centers(n: int, size: int, radii: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Centres without heavy overlap; a third placed against an existing nucleus (touching)."""
    centers = np.empty((0, 2))
    kept = []
    for i in range(n):
        for _ in range(40):
            if len(centers) and rng.random() < 0.35:
                j = rng.integers(len(centers))
                angle = rng.uniform(0, 2 * np.pi)
                dist = (radii[kept[j]] + radii[i]) * rng.uniform(0.95, 1.1)
                c = centers[j] + dist * np.array([np.sin(angle), np.cos(angle)])
            else:
                c = rng.uniform(-0.3 * radii[i], size + 0.3 * radii[i], 2)
            if len(centers):
                d = np.hypot(*(centers - c).T)
                if np.any(d < 0.92 * (radii[kept] + radii[i])):
                    continue
            centers = np.vstack([centers, c])
            kept.append(i)
            break
    return centers, np.array(kept, dtype=int)


def place_cells(size: int, style: CellStyle, rng: np.random.Generator) -> Layout:
    """Place nuclei (wobbly ellipses) and grow them into Voronoi-limited cell territories.

    Parameters
    ----------
    size : int
        Side of the square site in pixels.
    style : CellStyle
        Class parameters (``nuclear_area``, ``axis_ratio`` used here).
    rng : np.random.Generator
        Source of randomness.

    Returns
    -------
    Layout
        Label images ``nuclei``, ``cells`` (uint16, same ids) and distance maps.
    """
    f = _length_scale(size)
    n = int(round(rng.uniform(70, 150) * (size / REFERENCE_SIZE) ** 1.1))
    area = np.pi * (NUCLEUS_RADIUS * f) ** 2 * style.nuclear_area * rng.lognormal(0, 0.15, n)
    radii = np.sqrt(area / np.pi)
    centers, kept = _sample_centers(n, size, radii, rng)
    radii = radii[kept]
    q = np.clip(style.axis_ratio * rng.lognormal(0, 0.06, len(kept)), 0.45, 1.0)
    axes = np.stack([radii / np.sqrt(q), radii * np.sqrt(q)], axis=1)
    angles = rng.uniform(0, np.pi, len(kept))
    wobble = np.stack([rng.uniform(0, 0.05, (len(kept), 3)), rng.uniform(0, 2 * np.pi, (len(kept), 3))], -1)
    nuclei, nucleus_radius = paint_ellipses((size, size), centers, axes, angles, wobble)
    present = np.unique(nuclei[nuclei > 0]) - 1
    nuclei = _relabel(nuclei)
    centers, radii, kept = centers[present], radii[present], kept[present]

    dist, (iy, ix) = ndi.distance_transform_edt(nuclei == 0, return_indices=True)
    owner = nuclei[iy, ix]
    reach = np.zeros(len(kept) + 1, np.float32)
    reach[1:] = radii * rng.uniform(0.9, 1.7, len(kept))
    rough = 1 + 0.3 * smooth_noise((size, size), 4 * f, rng)
    cells = np.where(dist <= reach[owner] * rough, owner, 0).astype(np.uint16)
    cells[nuclei > 0] = nuclei[nuclei > 0]
    edge = ndi.distance_transform_edt(~find_boundaries(cells, mode="inner") & (cells > 0))
    return Layout(nuclei=nuclei, cells=cells, centers=centers, radii=radii,
                  nucleus_radius=nucleus_radius, edge_distance=edge.astype(np.float32),
                  nucleus_distance=dist.astype(np.float32), scale=f)


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive ids 1..N for the nuclei that landed inside the image."""
    present = np.unique(labels[labels > 0])
    lut = np.zeros(int(labels.max()) + 1, np.uint16)
    lut[present] = np.arange(1, len(present) + 1)
    return lut[labels]


def _cell_points(mask: np.ndarray, n: int, weight: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``n`` random points in ``mask``, accepted with probability ``weight``."""
    rows, cols = np.nonzero(mask)
    if not len(rows):
        return np.empty((0, 2))
    pick = rng.integers(0, len(rows), n)
    keep = rng.random(n) < weight[rows[pick], cols[pick]]
    return np.stack([rows[pick][keep], cols[pick][keep]], axis=1).astype(float)


def draw_channels(layout: Layout, style: CellStyle, rng: np.random.Generator) -> np.ndarray:
    """Noise-free signals of the six Cell Painting channels.

    Returns
    -------
    np.ndarray
        float32 ``(6, H, W)`` in channel order DNA, ER, Actin, RNA, Mito, Golgi, full scale 1.0.
    """
    shape, f = layout.nuclei.shape, layout.scale
    nuc, cell = layout.nuclei > 0, layout.cells > 0
    cyto = cell & ~nuc
    near = np.exp(-layout.nucleus_distance / (8 * f)).astype(np.float32)

    brightness = np.concatenate([[0], rng.uniform(0.5, 0.75, int(layout.nuclei.max()))]).astype(np.float32)
    chromatin = 1 + 0.12 * smooth_noise(shape, 1.2 * f * style.chromatin_scale, rng)
    dome = 1 - 0.2 * np.nan_to_num(layout.nucleus_radius, posinf=1.0) ** 2
    dna = ndi.gaussian_filter(brightness[layout.nuclei] * chromatin * dome * nuc, 0.8) + 0.02 * cell

    net = smooth_noise(shape, 1.3 * f * style.er_scale, rng)
    reticular = np.exp(-((net / 0.45) ** 2))
    er = cyto * (0.08 + 0.32 * near * (0.35 + 0.65 * reticular)) + 0.04 * nuc

    fibers = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), (0.8, 4 * f))
    rim = np.exp(-layout.edge_distance / (1.5 * f))
    actin = cell * (0.06 + 0.45 * style.actin_intensity * rim + 0.25 * np.clip(fibers, 0, None))

    rna = _nucleoli(layout, style, rng) + cyto * 0.12 * near + 0.03 * nuc

    n_mito = int(cyto.sum() * 0.02 * style.mito_density / style.mito_size)
    points = _cell_points(cyto, n_mito, 0.3 + 0.7 * near, rng)
    mito = draw_blobs(shape, points, 0.9 * f * style.mito_size, rng.uniform(0.35, 0.7, len(points)))
    mito = mito * cell + 0.04 * cyto

    golgi = _golgi(layout, style, rng) * cell + 0.02 * cyto
    return np.stack([dna, er, actin, rna, mito, golgi]).astype(np.float32)


def _nucleoli(layout: Layout, style: CellStyle, rng: np.random.Generator) -> np.ndarray:
    """2-4 bright spots per nucleus, well inside its outline."""
    points = []
    for (cy, cx), r in zip(layout.centers, layout.radii):
        k = rng.integers(2, 5)
        ang, rad = rng.uniform(0, 2 * np.pi, k), r * np.sqrt(rng.uniform(0, 0.25, k))
        points.append(np.stack([cy + rad * np.sin(ang), cx + rad * np.cos(ang)], 1))
    pts = np.concatenate(points) if points else np.empty((0, 2))
    spots = draw_blobs(layout.nuclei.shape, pts, 1.1 * layout.scale, rng.uniform(0.3, 0.45, len(pts)))
    return spots * style.rna_intensity * (layout.nuclei > 0)


def _golgi(layout: Layout, style: CellStyle, rng: np.random.Generator) -> np.ndarray:
    """A compact cluster of blobs beside each nucleus."""
    points = []
    for (cy, cx), r in zip(layout.centers, layout.radii):
        ang = rng.uniform(0, 2 * np.pi)
        hub = np.array([cy, cx]) + 1.25 * r * np.array([np.sin(ang), np.cos(ang)])
        points.append(hub + rng.normal(0, 1.2 * layout.scale, (5, 2)))
    pts = np.concatenate(points) if points else np.empty((0, 2))
    return draw_blobs(layout.nuclei.shape, pts, 1.3 * layout.scale,
                      np.full(len(pts), 0.15 * style.golgi_intensity))

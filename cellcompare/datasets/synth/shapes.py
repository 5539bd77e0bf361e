"""Drawing primitives shared by the synthetic generators (pure functions on arrays)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "acquire",
    "draw_blobs",
    "illumination_field",
    "paint_ellipses",
    "smooth_noise",
]


def smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise, standardised to zero mean and unit variance.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)``.
    sigma : float
        Correlation length in pixels.
    rng : np.random.Generator
        Source of randomness.

    Returns
    -------
    np.ndarray
        float32 ``(H, W)`` field.
    """
    field = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    std = field.std()
    return (field - field.mean()) / (std if std > 0 else 1.0)


def paint_ellipses(shape: tuple[int, int], centers: np.ndarray, axes: np.ndarray,
                   angles: np.ndarray, wobble: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Label image of (wobbly) ellipses; a pixel inside several goes to the nearest centre.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)``.
    centers : np.ndarray
        ``(N, 2)`` row, column of the centres.
    axes : np.ndarray
        ``(N, 2)`` semi-major and semi-minor axes in pixels.
    angles : np.ndarray
        ``(N,)`` orientation of the major axis in radians.
    wobble : np.ndarray, optional
        ``(N, 3, 2)`` amplitude and phase of the 2nd..4th radial harmonics of the outline.

    Returns
    -------
    labels : np.ndarray
        uint16 ``(H, W)``, 0 background, ``i + 1`` for ellipse ``i``.
    radius : np.ndarray
        float32 ``(H, W)`` normalised radius (0 centre, 1 outline) of the owning ellipse.
    """
    labels = np.zeros(shape, np.uint16)
    best = np.full(shape, np.inf, np.float32)
    for i, ((cy, cx), (a, b), theta) in enumerate(zip(centers, axes, angles)):
        pad = int(np.ceil(a * 1.3)) + 1
        y0, y1 = max(int(cy) - pad, 0), min(int(cy) + pad + 1, shape[0])
        x0, x1 = max(int(cx) - pad, 0), min(int(cx) + pad + 1, shape[1])
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dy, dx = yy - cy, xx - cx
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        if wobble is not None:
            phi = np.arctan2(v, u)
            r = r / (1 + sum(amp * np.cos((k + 2) * phi + ph) for k, (amp, ph) in enumerate(wobble[i])))
        win = best[y0:y1, x0:x1]
        take = (r <= 1) & (r < win)
        win[take] = r[take]
        labels[y0:y1, x0:x1][take] = i + 1
    best[labels == 0] = np.inf
    return labels, best


def draw_blobs(shape: tuple[int, int], points: np.ndarray, sigma: float,
               weights: np.ndarray | None = None) -> np.ndarray:
    """Gaussian spots of peak ~``weight`` at ``points`` (impulses blurred once, so it is fast).

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)``.
    points : np.ndarray
        ``(N, 2)`` row, column positions (rounded to pixels, clipped to the image).
    sigma : float
        Spot radius in pixels.
    weights : np.ndarray, optional
        ``(N,)`` peak heights (default 1).

    Returns
    -------
    np.ndarray
        float32 ``(H, W)``.
    """
    impulses = np.zeros(shape, np.float32)
    if len(points):
        rows = np.clip(np.round(points[:, 0]).astype(int), 0, shape[0] - 1)
        cols = np.clip(np.round(points[:, 1]).astype(int), 0, shape[1] - 1)
        np.add.at(impulses, (rows, cols), 1.0 if weights is None else weights.astype(np.float32))
    # a blurred unit impulse peaks at 1 / (2 pi sigma^2); rescale so spots peak near their weight
    return ndi.gaussian_filter(impulses, sigma) * np.float32(2 * np.pi * sigma**2)


def illumination_field(shape: tuple[int, int], rng: np.random.Generator,
                       strength: float = 0.3) -> np.ndarray:
    """Smooth multiplicative illumination: an off-centre vignette plus a linear gradient.

    Returns
    -------
    np.ndarray
        float32 ``(H, W)`` with values in about ``[1 - strength, 1]``.
    """
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h * rng.uniform(0.3, 0.7), w * rng.uniform(0.3, 0.7)
    r2 = ((yy - cy) / h) ** 2 + ((xx - cx) / w) ** 2
    gy, gx = rng.normal(0, 1, 2)
    grad = (gy * (yy / h - 0.5) + gx * (xx / w - 0.5)) * 0.5
    field = 1 - strength * (0.7 * r2 / r2.max() + 0.3 * (grad - grad.min()) / (np.ptp(grad) + 1e-6))
    return field.astype(np.float32)


def acquire(signal: np.ndarray, rng: np.random.Generator, *, photons: float,
            read_noise: float, max_value: int) -> np.ndarray:
    """Camera model: Poisson shot noise plus Gaussian read noise, quantised to integers.

    Parameters
    ----------
    signal : np.ndarray
        Expected intensity, 1.0 = full scale.
    rng : np.random.Generator
        Source of randomness.
    photons : float
        Photons collected at full scale (lower = noisier).
    read_noise : float
        Standard deviation of the Gaussian noise, in full-scale units.
    max_value : int
        255 for 8-bit, 65535 for 16-bit output.

    Returns
    -------
    np.ndarray
        uint8 or uint16 image.
    """
    counts = rng.poisson(np.clip(signal, 0, None) * photons).astype(np.float32) / np.float32(photons)
    counts += rng.normal(0, read_noise, signal.shape).astype(np.float32)
    dtype = np.uint8 if max_value <= 255 else np.uint16
    return np.clip(np.round(counts * max_value), 0, max_value).astype(dtype)

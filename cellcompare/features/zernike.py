"""Zernike moments of objects (AreaShape ``Zernike``) and of intensities (radial Zernikes).

cp_measure evaluates the Zernike basis on every foreground pixel once per call: once for the
shape moments and once per channel for the intensity-weighted radial moments. Here
:func:`zernike_basis` computes each pixel's coordinates in its object's enclosing unit circle
and the powers ``z**m`` once per object type, and one compiled pass (:func:`zernike_sums`)
sums basis × weight for the shape and every channel at once. The arithmetic is
``cp_measure.utils._zernike_scores``' (Horner in r², powers by numpy's complex multiply,
pixels summed in C order), so values agree to round-off; parity is tested to 1e-6 relative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from centrosome import zernike

ZERNIKE_DEGREE = 9


@dataclass(frozen=True)
class ZernikeBasis:
    """Foreground pixels of a sanitised label image in their objects' enclosing unit circles.

    Attributes
    ----------
    n : int
        Number of objects.
    flat, seg : np.ndarray
        ``(G,)`` flat index and object index (label − 1) of each foreground pixel.
    r2 : np.ndarray
        ``(G,)`` squared radius in the unit circle (NaN for 1-pixel objects, as cp_measure).
    powers : np.ndarray
        ``(M, G)`` complex ``z**m``, ``m = 1..M``, ``z = y + i x``.
    radii, counts : np.ndarray
        ``(n,)`` enclosing-circle radius and pixel count of each object.
    """

    n: int
    flat: np.ndarray
    seg: np.ndarray
    r2: np.ndarray
    powers: np.ndarray
    radii: np.ndarray
    counts: np.ndarray


def _indexes() -> np.ndarray:
    return zernike.get_zernike_indexes(ZERNIKE_DEGREE + 1)


def zernike_basis(labels: np.ndarray, hull: tuple | None = None) -> ZernikeBasis:
    """Unit-circle coordinates and ``z`` powers of ``labels`` ``(H, W)`` (labels ``1..N``).

    ``hull`` is ``centrosome.cpmorphology.convex_hull(labels, 1..N)`` when already computed
    (the enclosing circle is found from it; computed here otherwise).
    """
    n = int(labels.max()) if labels.size else 0
    centres, radii = zernike.minimum_enclosing_circle(labels, np.arange(1, n + 1),
                                                      hull_and_point_count=hull)
    radii = np.asarray(radii, dtype=float)
    flat = np.flatnonzero(labels.ravel() > 0)
    seg = labels.ravel()[flat] - 1
    rows, cols = np.divmod(flat, labels.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):   # 1-pixel objects: radius 0
        ym = (rows - centres[seg, 0]) / radii[seg]
        xm = (cols - centres[seg, 1]) / radii[seg]
    z = ym + 1j * xm
    powers = np.empty((int(_indexes()[:, 1].max()), z.size), complex)
    powers[0] = z
    for m in range(1, powers.shape[0]):
        np.multiply(powers[m - 1], z, out=powers[m])     # numpy's complex multiply, as cp_measure
    return ZernikeBasis(n=n, flat=flat, seg=seg, r2=xm * xm + ym * ym, powers=powers, radii=radii,
                        counts=np.bincount(seg, minlength=n).astype(float))


@dataclass(frozen=True)
class ZernikeSums:
    """Zernike moment sums of one label image: the shape (weight 1) and each channel.

    Attributes
    ----------
    basis : ZernikeBasis
        The basis the sums were taken over.
    real, imag : np.ndarray
        ``(1 + C, n, K)`` sums of weight × basis, ``K`` Zernike indexes (:func:`_indexes`
        order); index 0 is the shape (every pixel weighs 1), ``1..C`` the image channels.
    """

    basis: ZernikeBasis
    real: np.ndarray
    imag: np.ndarray


def _padded_coefficients(indexes: np.ndarray) -> np.ndarray:
    """``(S, K)`` radial polynomial coefficients in Horner order, right-aligned, zero-padded.

    Horner from ``poly = 0`` through leading zeros gives ``0 * r² + 0 = 0`` exactly (NaN for
    a NaN ``r²``, as the first real step would), so every index runs the same ``S`` steps and
    one loop over indexes evaluates all polynomials with unchanged arithmetic.
    """
    coeffs = zernike.construct_zernike_lookuptable(indexes)
    terms = (indexes[:, 0] - indexes[:, 1]) // 2 + 1
    padded = np.zeros((int(terms.max()), len(indexes)))
    for k, d in enumerate(terms):
        padded[padded.shape[0] - d:, k] = coeffs[k, :d]
    return padded


@numba.njit(cache=True)
def _zernike_sums(seg, r2, zpow, weights, horner, zm, n):
    """Per object, channel and Zernike index: sums of weight × basis (cp_measure's arithmetic).

    The radial polynomial is Horner in r² (zero outside the unit circle), as
    ``cp_measure.utils._zernike_scores``, run for all indexes at once over right-aligned
    coefficients (``horner``, :func:`_padded_coefficients`); ``zpow[m - 1]`` holds ``z**m``
    computed by numpy exactly as there (its SIMD complex multiply rounds differently from
    scalar code), and pixels are added in the same (C) order as its ``bincount``. Each term
    is ``(poly × weight) × z**m``, as numpy's ``(t + 0j) * z`` whose extra ``∓0 · z`` terms
    change neither a sum that starts at +0 nor a NaN. For ``m = 0`` the factor is 1 (exact)
    and the imaginary sums are not used. ``weights`` is ``(C, G)``; returns ``(n, C, K)``.
    """
    n_ch, k_max, steps = weights.shape[0], zm.size, horner.shape[0]
    real = np.zeros((n, n_ch, k_max))
    imag = np.zeros((n, n_ch, k_max))
    poly = np.empty(k_max)
    fac_re = np.ones(k_max)
    fac_im = np.zeros(k_max)
    for g in range(seg.size):
        o, rr = seg[g], r2[g]
        poly[:] = 0.0
        for step in range(steps):
            for k in range(k_max):
                poly[k] = poly[k] * rr + horner[step, k]
        if rr > 1:
            poly[:] = 0.0
        for k in range(k_max):
            if zm[k] > 0:
                fac_re[k] = zpow[zm[k] - 1, g].real
                fac_im[k] = zpow[zm[k] - 1, g].imag
        for ch in range(n_ch):
            w = weights[ch, g]
            re, im = real[o, ch], imag[o, ch]
            for k in range(k_max):
                term = poly[k] * w
                re[k] += term * fac_re[k]
                im[k] += term * fac_im[k]
    return real, imag


def zernike_sums(basis: ZernikeBasis, image: np.ndarray | None = None) -> ZernikeSums:
    """Moment sums of the shape and of every channel of ``image`` ``(C, H, W)``, in one pass.

    The per-pixel work (radial polynomials, ``z`` powers) is shared by the shape and the
    channels, so AreaShape's Zernikes and the radial Zernikes cost one pass together.
    """
    indexes = _indexes()
    channels = [] if image is None else [np.ascontiguousarray(ch, dtype=np.float64).ravel()[basis.flat]
                                         for ch in image]
    weights = np.stack([np.ones(basis.flat.size), *channels])
    real, imag = _zernike_sums(basis.seg, basis.r2, basis.powers, weights,
                               _padded_coefficients(indexes), indexes[:, 1].astype(np.int64),
                               basis.n)
    real, imag = np.moveaxis(real, 1, 0), np.moveaxis(imag, 1, 0)
    imag[:, :, indexes[:, 1] == 0] = 0.0          # never accumulated by cp_measure (m = 0)
    return ZernikeSums(basis=basis, real=real, imag=imag)


def shape_zernikes(sums: ZernikeSums | ZernikeBasis) -> dict[str, np.ndarray]:
    """AreaShape ``Zernike_n_m`` (degree 9): moment magnitude over the enclosing-circle area.

    ``sums`` may be :func:`zernike_sums` already taken (with or without channels) or a basis.
    """
    sums = sums if isinstance(sums, ZernikeSums) else zernike_sums(sums)
    basis, real, imag = sums.basis, sums.real, sums.imag
    area = np.pi * basis.radii * basis.radii
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.sqrt(real[0] * real[0] + imag[0] * imag[0]) / area[:, None]
    return {f"Zernike_{zn}_{zm}": score[:, i] for i, (zn, zm) in enumerate(_indexes())}


def radial_zernikes(sums: ZernikeSums | ZernikeBasis,
                    image: np.ndarray | None = None) -> list[dict[str, np.ndarray]]:
    """ZernikeMagnitude / ZernikePhase ``n_m`` (degree 9) of every channel of ``image`` ``(C, H, W)``.

    ``sums`` is :func:`zernike_sums` of the image already taken, or a basis (then ``image``
    is required). Magnitude is normalised by the object's pixel count; phase is
    CellProfiler's ``arctan2(real, imag)``.
    """
    if not isinstance(sums, ZernikeSums):
        if image is None:
            raise ValueError("radial_zernikes needs the image when given a basis")
        sums = zernike_sums(sums, image)
    indexes, basis = _indexes(), sums.basis
    real, imag = sums.real[1:], sums.imag[1:]
    out = []
    for ch in range(real.shape[0]):
        magnitude = np.sqrt(real[ch] * real[ch] + imag[ch] * imag[ch]) / basis.counts[:, None]
        phase = np.arctan2(real[ch], imag[ch])
        feats = {}
        for idx, (zn, zm) in enumerate(indexes):
            feats[f"RadialDistribution_ZernikeMagnitude_{zn}_{zm}"] = magnitude[:, idx]
            feats[f"RadialDistribution_ZernikePhase_{zn}_{zm}"] = phase[:, idx]
        out.append(feats)
    return out

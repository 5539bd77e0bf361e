"""Zernike moments of objects (AreaShape ``Zernike``) and of intensities (radial Zernikes).

cp_measure evaluates the Zernike basis on every foreground pixel once per call: once for the
shape moments and once per channel for the intensity-weighted radial moments. Here
:func:`zernike_basis` computes each pixel's coordinates in its object's enclosing unit circle
and the powers ``z**m`` once per object type, and one compiled pass sums basis × weight for
every channel at once. The arithmetic is ``cp_measure.utils._zernike_scores``' (Horner in r²,
powers by numpy's complex multiply, pixels summed in C order), so values agree to round-off;
parity is tested to 1e-6 relative.
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
    powers_re, powers_im : np.ndarray
        ``(M, G)`` real and imaginary parts of ``z**m``, ``m = 1..M``, ``z = y + i x``.
    radii, counts : np.ndarray
        ``(n,)`` enclosing-circle radius and pixel count of each object.
    """

    n: int
    flat: np.ndarray
    seg: np.ndarray
    r2: np.ndarray
    powers_re: np.ndarray
    powers_im: np.ndarray
    radii: np.ndarray
    counts: np.ndarray


def _indexes() -> np.ndarray:
    return zernike.get_zernike_indexes(ZERNIKE_DEGREE + 1)


def zernike_basis(labels: np.ndarray) -> ZernikeBasis:
    """Unit-circle coordinates and ``z`` powers of ``labels`` ``(H, W)`` (labels ``1..N``)."""
    n = int(labels.max()) if labels.size else 0
    centres, radii = zernike.minimum_enclosing_circle(labels, np.arange(1, n + 1))
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
    return ZernikeBasis(n=n, flat=flat, seg=seg, r2=xm * xm + ym * ym,
                        powers_re=np.ascontiguousarray(powers.real),
                        powers_im=np.ascontiguousarray(powers.imag), radii=radii,
                        counts=np.bincount(seg, minlength=n).astype(float))


@numba.njit(cache=True)
def _zernike_sums(seg, r2, zpow_re, zpow_im, weights, coeffs, zn, zm, n):
    """Per object, Zernike index and channel: sums of weight × basis (cp_measure's arithmetic).

    The radial polynomial is Horner in r² (zero outside the unit circle), as
    ``cp_measure.utils._zernike_scores``; ``zpow_*[m - 1]`` hold ``z**m`` computed by numpy
    exactly as there (its SIMD complex multiply rounds differently from scalar code), and
    pixels are added in the same (C) order as its ``bincount``. numpy's ``(t + 0j) * z``
    adds ``∓0 · z`` terms, which change neither a sum that starts at +0 nor a NaN, so
    they are left out. Returns ``(n, K, C)`` arrays.
    """
    n_ch, k_max = weights.shape[1], zn.size
    real = np.zeros((n, k_max, n_ch))
    imag = np.zeros((n, k_max, n_ch))
    for g in range(seg.size):
        o = seg[g]
        for k in range(k_max):
            poly = 0.0
            for c in range((zn[k] - zm[k]) // 2 + 1):
                poly *= r2[g]
                poly += coeffs[k, c]
            if r2[g] > 1:
                poly = 0.0
            if zm[k] == 0:
                for ch in range(n_ch):
                    real[o, k, ch] += poly * weights[g, ch]
            else:
                pr, pi = zpow_re[zm[k] - 1, g], zpow_im[zm[k] - 1, g]
                for ch in range(n_ch):
                    term = poly * weights[g, ch]
                    real[o, k, ch] += term * pr
                    imag[o, k, ch] += term * pi
    return real, imag


def _moments(basis: ZernikeBasis, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(C, n, K)`` real and imaginary moment sums for ``weights`` ``(G, C)``."""
    indexes = _indexes()
    coeffs = np.ascontiguousarray(zernike.construct_zernike_lookuptable(indexes), dtype=np.float64)
    real, imag = _zernike_sums(basis.seg, basis.r2, basis.powers_re, basis.powers_im,
                               np.ascontiguousarray(weights), coeffs,
                               indexes[:, 0].astype(np.int64), indexes[:, 1].astype(np.int64),
                               basis.n)
    return np.moveaxis(real, 2, 0), np.moveaxis(imag, 2, 0)


def shape_zernikes(basis: ZernikeBasis) -> dict[str, np.ndarray]:
    """AreaShape ``Zernike_n_m`` (degree 9): moment magnitude over the enclosing-circle area."""
    real, imag = _moments(basis, np.ones((basis.flat.size, 1)))
    area = np.pi * basis.radii * basis.radii
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.sqrt(real[0] * real[0] + imag[0] * imag[0]) / area[:, None]
    return {f"Zernike_{zn}_{zm}": score[:, i] for i, (zn, zm) in enumerate(_indexes())}


def radial_zernikes(basis: ZernikeBasis, image: np.ndarray) -> list[dict[str, np.ndarray]]:
    """ZernikeMagnitude / ZernikePhase ``n_m`` (degree 9) of every channel of ``image`` ``(C, H, W)``.

    Magnitude is normalised by the object's pixel count; phase is CellProfiler's
    ``arctan2(real, imag)``.
    """
    indexes = _indexes()
    weights = np.stack([np.ascontiguousarray(ch, dtype=np.float64).ravel()[basis.flat]
                        for ch in image], axis=1)
    real, imag = _moments(basis, weights)
    out = []
    for ch in range(weights.shape[1]):
        magnitude = np.sqrt(real[ch] * real[ch] + imag[ch] * imag[ch]) / basis.counts[:, None]
        phase = np.arctan2(real[ch], imag[ch])
        feats = {}
        for idx, (zn, zm) in enumerate(indexes):
            feats[f"RadialDistribution_ZernikeMagnitude_{zn}_{zm}"] = magnitude[:, idx]
            feats[f"RadialDistribution_ZernikePhase_{zn}_{zm}"] = phase[:, idx]
        out.append(feats)
    return out

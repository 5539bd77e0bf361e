"""Benchmark: our feature engine vs cp_measure, family by family, on the same masks.

Run from the repository root::

    python benchmarks/features_bench.py --preset full [--sites 2] [--size 512] [--repeat 1]

For synthetic Cell Painting sites (``cellcompare.datasets.synth``, RxRx1 layout, 6 channels)
it prints, in one run:

- the numba compile / first-call cost (paid once per process, cached on disk afterwards),
  measured on a warm-up site and not counted below;
- per family: our seconds per site and cp_measure's (its functions called on the same
  sanitised masks, channels and unordered channel pairs, with our default convention's
  ``legacy=``), and the ratio, against both of cp_measure's backends: its default (numpy /
  scipy) and ``cp_measure.set_accelerator("numba")`` (0.3.0: intensity, texture and Feret
  compiled; the others are the default's), whose compilation is paid on the warm-up site;
- the whole-site time of our preset, split into reading, segmentation and measurement;
- peak resident memory of this process;
- the projection for the full RxRx1 (125,510 sites of 512×512×6) on 16 cores, from the
  whole-site time (one site per core at a time), scaled by pixel area when ``--size`` is not 512.
"""

from __future__ import annotations

import os

# one core per site, as a batch worker runs: no BLAS / OpenMP / numba thread pools
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import itertools
import resource
import tempfile
import time
import warnings
from pathlib import Path

import cp_measure
import numpy as np
from cp_measure._sanitize import sanitize_masks
from cp_measure.bulk import get_core_measurements, get_correlation_measurements

from cellcompare.datasets import open_dataset
from cellcompare.datasets.synth import make_cellpainting
from cellcompare.features import FeatureConfig, extract_sample
from cellcompare.features.config import PRESETS
from cellcompare.features.extract import _channel_names, measure_sample, segment_sample
from cellcompare.features.measure import image_spectra, measure_objects

RXRX1_SITES = 125_510
CORES = 16
# cp_measure function(s) behind each of our families; Neighbors has none in cp_measure
REFERENCE = {
    "AreaShape": ["sizeshape"], "Zernike": ["zernike"], "Feret": ["feret"],
    "Intensity": ["intensity"], "Texture": ["texture"], "Granularity": ["granularity"],
    "RadialDistribution": ["radial_distribution", "radial_zernikes"],
    "Correlation": ["pearson", "manders_fold", "rwc", "costes"],
}
_CHANNEL_FREE = {"AreaShape", "Zernike", "Feret"}


def _ours(family: str, image: np.ndarray, names: tuple, masks: dict, config: FeatureConfig) -> float:
    cfg = FeatureConfig(preset=config.preset, families=(family,), texture_scales=config.texture_scales)
    start = time.perf_counter()
    spectra = image_spectra(image, cfg)
    for obj, labels in masks.items():
        measure_objects(obj, labels, image, names, cfg, spectra=spectra)
    return time.perf_counter() - start


#: cp_measure's backends, as ``set_accelerator`` names them, and how the table names them
BACKENDS = {None: "default", "numba": "numba"}


def _cp_measure_version() -> str:
    from importlib.metadata import version

    return version("cp_measure")


def _reference(family: str, image: np.ndarray, masks: dict, config: FeatureConfig,
               backend: str | None = None) -> float | None:
    if family not in REFERENCE:
        return None
    cp_measure.set_accelerator(backend)
    core = get_core_measurements(legacy=config.convention.cp_measure_legacy)
    corr = get_correlation_measurements()
    start = time.perf_counter()
    for labels in masks.values():
        clean, _ = sanitize_masks(labels)
        for func in REFERENCE[family]:
            if family in _CHANNEL_FREE:
                core[func](clean, None)
            elif family == "Correlation":
                for i, j in itertools.combinations(range(image.shape[0]), 2):
                    kwargs = {"scale_max": 255} if func == "costes" else {}
                    corr[func](image[i], image[j], clean, **kwargs)
            else:
                scales = config.active_scales if family == "Texture" else (None,)
                for c, scale in itertools.product(range(image.shape[0]), scales):
                    kwargs = {"scale": scale, "gray_levels": config.texture_gray_levels} \
                        if scale is not None else {}
                    core[func](clean, image[c], **kwargs)
    return time.perf_counter() - start


def _whole_site(ds, index: int, config: FeatureConfig) -> dict[str, float]:
    start = time.perf_counter()
    sample = ds[index]
    image = sample.float_image.astype(np.float64)
    read = time.perf_counter()
    names = _channel_names(sample)
    masks = segment_sample(image, names, config, sample.id)
    seg = time.perf_counter()
    measure_sample(image, names, masks, config)
    end = time.perf_counter()
    return {"read": read - start, "segment": seg - read, "measure": end - seg, "total": end - start}


def main() -> None:
    """Run the benchmark and print its numbers."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="full", choices=sorted(PRESETS))
    parser.add_argument("--sites", type=int, default=2, help="sites measured (after one warm-up)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--no-reference", action="store_true", help="skip cp_measure (slow)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    config = FeatureConfig(preset=args.preset)
    families = config.active_families
    with tempfile.TemporaryDirectory() as tmp:
        root = make_cellpainting(Path(tmp) / "data", classes=1, per_class=args.sites + 1,
                                 size=args.size, plates=1)
        ds = open_dataset(root)
        start = time.perf_counter()
        extract_sample(ds[0], config)                 # warm-up: numba compile or cache load
        first = time.perf_counter() - start
        rss_warm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if not args.no_reference:                    # numba backend: compile on the warm-up
            sample = ds[0]
            image = sample.float_image.astype(np.float64)
            masks = segment_sample(image, _channel_names(sample), config, sample.id)
            for fam in families:
                _reference(fam, image, masks, config, "numba")
        ours = {f: [] for f in families}
        ref = {(f, b): [] for f in families for b in BACKENDS}
        whole, cells = [], []
        for index in range(1, args.sites + 1):
            whole.append(_whole_site(ds, index, config))
            sample = ds[index]
            names = _channel_names(sample)
            image = sample.float_image.astype(np.float64)
            masks = segment_sample(image, names, config, sample.id)
            cells.append(int(masks["Nuclei"].max()))
            for fam in families:
                ours[fam].append(_ours(fam, image, names, masks, config))
                for backend in BACKENDS if not args.no_reference else ():
                    ref[fam, backend].append(_reference(fam, image, masks, config, backend))
        cp_measure.set_accelerator(None)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"preset={args.preset} sites={args.sites} size={args.size} channels={len(names)} "
          f"cells/site={np.mean(cells):.1f} (objects: Nuclei, Cells, Cytoplasm)")
    print(f"first site incl. numba compile/cache load (not counted below): {first:.2f} s")
    print(f"cp_measure {_cp_measure_version()}, legacy={config.convention.cp_measure_legacy} "
          f"(conventions: {config.conventions}); backends: "
          + ", ".join(f"{name} (set_accelerator({b!r}))" for b, name in BACKENDS.items()))
    header = "".join(f"{'cpm ' + n:>14}{'ratio':>8}" for n in BACKENDS.values())
    print(f"{'family':<20}{'ours s/site':>12}{header}")
    tot_ours, tot_ref = 0.0, dict.fromkeys(BACKENDS, 0.0)
    for fam in families:
        o = float(np.mean(ours[fam]))
        tot_ours += o
        cells_ref = ""
        for backend in BACKENDS:
            r = None if args.no_reference or ref[fam, backend][0] is None else float(np.mean(ref[fam, backend]))
            tot_ref[backend] += r or 0.0
            cells_ref += f"{r:14.3f}{r / o:7.1f}x" if r is not None else f"{'-':>14}{'-':>8}"
        print(f"{fam:<20}{o:12.3f}{cells_ref}")
    if not args.no_reference:
        compared = sum(float(np.mean(ours[f])) for f in families if f in REFERENCE)
        totals = "".join(f"{tot_ref[b]:14.3f}{tot_ref[b] / compared:7.1f}x" for b in BACKENDS)
        print(f"{'all (measure only)':<20}{tot_ours:12.3f}{totals}  (ratio over families cp_measure has)")
    site = {k: float(np.mean([w[k] for w in whole])) for k in whole[0]}
    print(f"whole site, one core: {site['total']:.2f} s = read {site['read']:.2f} + segment "
          f"{site['segment']:.2f} + measure {site['measure']:.2f} (incl. table assembly)")
    if not args.no_reference:
        for backend, name in BACKENDS.items():
            print(f"whole site against cp_measure {name}'s families alone: "
                  f"{tot_ref[backend] / site['total']:.1f}x (ours includes reading, segmentation, "
                  f"Neighbors and table assembly)")
    print(f"peak RSS of this process: {rss:.0f} MiB (after warm-up {rss_warm:.0f} MiB)")
    per_site_512 = site["total"] * (512 / args.size) ** 2
    hours = per_site_512 * RXRX1_SITES / CORES / 3600
    print(f"projected full RxRx1 ({RXRX1_SITES} sites 512x512x6) on {CORES} cores: {hours:.2f} h "
          f"({per_site_512:.2f} s/site/core{', area-scaled' if args.size != 512 else ''})")


if __name__ == "__main__":
    main()

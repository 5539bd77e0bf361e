"""Benchmark: our `standard` extraction vs plain cp_measure.featurize on the same masks.

Run from the repository root: ``python benchmarks/features_bench.py [--sites 2] [--size 256]
[--scaling-sites 16]``.
Prints per-site seconds for both, their ratio, the 1 → 2 job scaling of the batch job, and
the projected time for the full RxRx1 (125,510 sites of 512×512×6) on 16 cores, scaling the
measured per-site time by pixel area (cell density of the synthetic data is size-adjusted).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from cp_measure.featurizer import featurize, make_featurizer_config

from cellcompare.datasets import open_dataset
from cellcompare.datasets.synth import make_cellpainting
from cellcompare.features import FeatureConfig, run_extraction
from cellcompare.features.extract import _channel_names, measure_sample, segment_sample

RXRX1_SITES = 125_510


def _reference(image: np.ndarray, masks: dict, names: tuple[str, ...]) -> float:
    cfg = make_featurizer_config(list(names), objects=list(masks), granularity=False,
                                 radial_distribution=False, radial_zernikes=False,
                                 zernike=False, feret=False,
                                 correlation_costes_params={"scale_max": 255})
    stacked = np.stack([masks[k] for k in masks])[None]
    start = time.perf_counter()
    featurize(image[None], stacked, cfg)
    return time.perf_counter() - start


def main() -> None:
    """Run the benchmark and print its numbers."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sites", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--scaling-sites", type=int, default=None,
                        help="sites for the 1 -> 2 job batch runs (default: --sites); more sites "
                             "amortise worker start-up without re-running the slow reference")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    config = FeatureConfig(preset="standard")
    with tempfile.TemporaryDirectory() as tmp:
        n_sites = max(args.sites, args.scaling_sites or 0)
        root = make_cellpainting(Path(tmp) / "data", classes=2, per_class=max(1, n_sites // 2),
                                 size=args.size, plates=1)
        ds = open_dataset(root)
        ours, ref, cells = [], [], 0
        for sample in list(ds)[: args.sites]:
            names = _channel_names(sample)
            image = sample.float_image.astype(np.float64)
            masks = segment_sample(image, names, config, sample.id)
            cells += int(masks["Nuclei"].max())
            start = time.perf_counter()
            measure_sample(image, names, masks, config)
            ours.append(time.perf_counter() - start)
            ref.append(_reference(image, masks, names))
        t_ours, t_ref = float(np.mean(ours)), float(np.mean(ref))
        print(f"sites={len(ours)} size={args.size} channels={len(names)} cells/site={cells / len(ours):.1f}")
        print(f"ours (standard, measure only): {t_ours:.2f} s/site")
        print(f"cp_measure.featurize (same families, same masks): {t_ref:.2f} s/site")
        print(f"speed-up ours vs cp_measure: {t_ref / t_ours:.2f}x")
        wall = {}
        for jobs in (1, 2):
            start = time.perf_counter()
            run_extraction(root, Path(tmp) / f"out{jobs}", config, jobs=jobs)
            wall[jobs] = time.perf_counter() - start
            print(f"batch job, jobs={jobs}: {wall[jobs]:.2f} s for {len(ds)} sites "
                  f"({wall[jobs] / len(ds):.2f} s/site incl. reading + segmentation)")
        print(f"scaling 1 -> 2 jobs: {wall[1] / wall[2]:.2f}x")
        per_site_512 = wall[1] / len(ds) * (512 / args.size) ** 2
        hours = per_site_512 * RXRX1_SITES / 16 / 3600
        print(f"projected full RxRx1 ({RXRX1_SITES} sites 512x512x6) on 16 cores: {hours:.1f} h "
              f"({per_site_512:.1f} s/site/core, area-scaled)")


if __name__ == "__main__":
    main()

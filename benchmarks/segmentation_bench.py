"""Segmentation defaults on CellProfiler's real examples: counts against counts by eye, and time.

Side by side in one run, per example: the old defaults (first channel, Otsu, smoothing 1,
``min_area`` 30, distance declumping) and the new ones (nucleus channel by name or signal,
diameter estimated, minimum cross-entropy, intensity declumping). Prints the median nuclei per
image against the count by eye of tests/test_segmentation_real.py, and the seconds per image of
the segmentation alone (warm: one untimed pass first).

    .venv/bin/python benchmarks/segmentation_bench.py [--examples ../shared/data/cellprofiler-examples]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from cellcompare.datasets import open_dataset
from cellcompare.features import FeatureConfig
from cellcompare.features.extract import identify_sample
from cellcompare.features.plan import plan_dataset

#: ``folder: (open_dataset options, median nuclei per image counted by eye)``; Fly and Vitra
#: are the tile-corrected estimates of tests/test_segmentation_real.py.
EXAMPLES = {
    "ExampleSpeckles": ({"layout": "pattern", "pattern": r"(?P<site>\d+-\d+)hr(?P<channel>h2ax|hoe)2"}, 8),
    "ExampleFly": ({}, 732),
    "ExampleVitraImages": ({"layout": "pattern",
                            "pattern": r"Channel (?P<channel>\d)-(?P<col>\d+)-(?P<well>[A-Z]-\d+)-(?P<site>\d+)"}, 685),
}
OLD = FeatureConfig(threshold_method="otsu", smoothing_sigma=1.0, min_area=30, declump="distance")


def _counts(ds, config: FeatureConfig) -> tuple[list[int], float]:
    names = tuple(ds.channel_names)
    images = [(s.id, np.asarray(s.float_image, dtype=np.float64)) for s in ds]
    identify_sample(images[0][1], names, config, images[0][0])          # warm-up, untimed
    start = time.perf_counter()
    counts = [int(identify_sample(im, names, config, sid).masks["Nuclei"].max()) for sid, im in images]
    return counts, (time.perf_counter() - start) / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"
                                                  / "cellprofiler-examples"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"{'example':20} {'by eye':>7} | {'old: channel':>13} {'median':>7} {'s/img':>6} | "
          f"{'new: channel':>13} {'diameter':>13} {'median':>7} {'s/img':>6}")
    for folder, (options, by_eye) in EXAMPLES.items():
        path = Path(args.examples) / folder / "images"
        if not path.is_dir():
            print(f"{folder:20} absent ({path})")
            continue
        ds = open_dataset(path, **options)
        old_counts, old_s = _counts(ds, OLD)
        start = time.perf_counter()
        new, record = plan_dataset(ds, FeatureConfig())
        plan_s = time.perf_counter() - start
        new_counts, new_s = _counts(ds, new)
        low, high = new.diameter
        print(f"{folder:20} {by_eye:7d} | {ds.channel_names[0]:>13} {np.median(old_counts):7.0f} {old_s:6.2f} | "
              f"{new.dna_channel + ' (' + record['dna_channel']['chosen_by'] + ')':>13} "
              f"{f'{low:g}-{high:g}':>13} {np.median(new_counts):7.0f} {new_s:6.2f}   (planning {plan_s:.1f} s)")


if __name__ == "__main__":
    main()

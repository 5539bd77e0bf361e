"""Default segmentation on CellProfiler's real example images, against counts made by eye.

No channel, diameter or threshold is given: the nucleus channel, its diameter and the threshold
are the defaults (features.plan, CellProfiler's minimum cross-entropy). Counts by eye:

* ExampleSpeckles (one site, Hoechst + H2AX, 12-bit in 16-bit files): 8 nuclei, 7 whole and one
  cut by the left border, counted on the whole image.
* ExampleFly (3 sites; D, F, R channels sorted by name, the nuclei in D) and ExampleVitraImages
  (wells A01, A12; channels "1", "2" with the nuclei in 2) hold 300-950 nuclei per site. Their
  nuclei were counted by eye in 200 x 200 px tiles (a nucleus counts where its centre lies):
  Fly 01_POS218 rows 300-500 x cols 300-500: 21; rows 700-900 x cols 400-600: 25. Vitra A-12
  rows 400-600 x cols 600-800: 49. The site's count by eye is then estimated as the segmented
  count corrected by the tiles' ratio (by eye / segmented).
* ExampleIlluminationCorrection (72 Transfluor GFP fields, no nuclear stain) field O01 f00:
  about 42 cells (9, 10, 11, 12 per quadrant).

The goal is each example's median within 20 % of the count by eye.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from cellcompare.datasets import open_dataset
from cellcompare.features import FeatureConfig
from cellcompare.features.extract import identify_sample
from cellcompare.features.plan import plan_dataset

from conftest import SHARED_EXAMPLES

#: ``(example folder, open_dataset options)`` of each real example.
EXAMPLES = {
    "fly": ("ExampleFly", {}),
    "speckles": ("ExampleSpeckles", {"layout": "pattern",
                                     "pattern": r"(?P<site>\d+-\d+)hr(?P<channel>h2ax|hoe)2"}),
    "vitra": ("ExampleVitraImages", {"layout": "pattern",
                                     "pattern": r"Channel (?P<channel>\d)-(?P<col>\d+)-(?P<well>[A-Z]-\d+)-(?P<site>\d+)"}),
    "illum": ("ExampleIlluminationCorrection", {"layout": "pattern", "pattern": "cellprofiler"}),
}
#: Tiles counted by eye: ``(sample id, (row0, row1, col0, col1), nuclei)``.
TILES = {
    "fly": [("01_POS218", (300, 500, 300, 500), 21), ("01_POS218", (700, 900, 400, 600), 25)],
    "vitra": [("A-12_00_col12", (400, 600, 600, 800), 49)],
}


def _open(name: str):
    folder, options = EXAMPLES[name]
    path = SHARED_EXAMPLES / folder / "images"
    if not path.is_dir():
        pytest.skip(f"CellProfiler example images not found at {path} (../shared absent)")
    return open_dataset(path, **options)


def _nuclei(name: str, ids=None) -> tuple[dict, dict, FeatureConfig]:
    ds = _open(name)
    config, record = plan_dataset(ds, FeatureConfig())
    labels = {}
    for sample in (ds.get(i) for i in (ids or ds.ids)):
        image = np.asarray(sample.float_image, dtype=np.float64)
        labels[sample.id] = identify_sample(image, tuple(ds.channel_names), config, sample.id).masks["Nuclei"]
    return labels, record, config


def _in_tile(labels: np.ndarray, box) -> int:
    r0, r1, c0, c1 = box
    centres = ndi.center_of_mass(np.ones_like(labels), labels, np.arange(1, labels.max() + 1))
    return sum(r0 <= r < r1 and c0 <= c < c1 for r, c in centres)


def test_speckles_default_segmentation_finds_the_eight_nuclei():
    labels, record, config = _nuclei("speckles")
    assert record["dna_channel"] == {"name": "hoe", "chosen_by": "name"}
    low, high = config.diameter                              # CellProfiler sets 120-300 here
    assert low <= 120 and high >= 300                          # the estimate covers it
    count = int(next(iter(labels.values())).max())
    assert abs(count - 8) <= 0.2 * 8


@pytest.mark.parametrize("name, channel", [("fly", "D"), ("vitra", "2")])
def test_default_segmentation_is_within_twenty_percent_of_counts_by_eye(name, channel):
    labels, record, config = _nuclei(name)
    assert record["dna_channel"]["name"] == channel          # by signal: neither is named DNA
    assert record["diameter"]["chosen_by"] == "estimated"
    counts = {sid: int(lab.max()) for sid, lab in labels.items()}
    ratios = []
    for sid, box, by_eye in TILES[name]:
        found = _in_tile(labels[sid], box)
        assert abs(found - by_eye) <= 0.2 * by_eye, (sid, box, found, by_eye)
        ratios.append((by_eye, found))
    correction = sum(e for e, _ in ratios) / sum(f for _, f in ratios)
    median = float(np.median(list(counts.values())))
    by_eye_site = counts[TILES[name][0][0]] * correction
    assert abs(median - by_eye_site) <= 0.2 * by_eye_site, (counts, by_eye_site)


@pytest.mark.xfail(strict=True, reason="ExampleIlluminationCorrection has no nuclear stain: the GFP "
                   "cytoplasm with its bright pits falls apart into ~4x as many objects as cells; "
                   "cell segmentation of a cytoplasm stain is not done by threshold and watershed")
def test_transfluor_fields_without_a_nuclear_stain_are_counted_as_cells():
    labels, _, _ = _nuclei("illum", ids=["AS_09047_050428030001_O01_00"])
    count = int(next(iter(labels.values())).max())
    assert abs(count - 42) <= 0.2 * 42

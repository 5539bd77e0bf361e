"""OME-Zarr HCS plates: written with ome-zarr's own writer, read lazily per field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ome_zarr", reason="ome-zarr is in requirements.txt; not installed here")

import zarr  # noqa: E402
from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata  # noqa: E402

from cellcompare.cli import main  # noqa: E402
from cellcompare.datasets import open_dataset  # noqa: E402
from cellcompare.datasets.errors import ChannelShapeError, LayoutError, MissingChannelError  # noqa: E402
from cellcompare.datasets.omezarr import OmeZarrDataset  # noqa: E402

CHANNELS = ("DNA", "Actin", "RNA")


def write_plate(path: Path, wells=(("A", "1"), ("B", "3")), fields=2, channels=CHANNELS,
                shape=(24, 20), labels=None) -> dict[str, np.ndarray]:
    """A plate of uint16 fields with ome-zarr's writer; returns the images by sample id."""
    root = zarr.open_group(str(path), mode="w")
    rows = sorted({r for r, _ in wells})
    cols = sorted({c for _, c in wells}, key=int)
    write_plate_metadata(root, rows, cols, [f"{r}/{c}" for r, c in wells], name="P7")
    rng = np.random.default_rng(0)
    images = {}
    for k, (r, c) in enumerate(wells):
        well = root.require_group(r).require_group(c)
        write_well_metadata(well, [str(f) for f in range(fields)])
        if labels:
            well.attrs["cellcompare"] = {"label": labels[k]}
        for f in range(fields):
            image = rng.integers(0, 4000, (len(channels), *shape)).astype(np.uint16)
            window = {"start": 0, "end": 65535, "min": 0, "max": 65535}
            write_image(image, well.require_group(str(f)), axes="cyx", scale_factors=[2],
                        omero={"channels": [{"label": n, "color": "FFFFFF", "window": window}
                                            for n in channels]})
            images[f"P7_{r}{int(c):02d}_{f}"] = image
    return images


def test_plate_fields_are_samples_with_plate_well_site_and_omero_channels(tmp_path):
    images = write_plate(tmp_path / "p.zarr")
    ds = open_dataset(tmp_path / "p.zarr")
    assert isinstance(ds, OmeZarrDataset) and ds.channel_names == CHANNELS
    assert list(ds.ids) == ["P7_A01_0", "P7_A01_1", "P7_B03_0", "P7_B03_1"]
    assert ds.index[["Metadata_Plate", "Metadata_Well", "Metadata_Site"]].values.tolist()[2] == ["P7", "B03", "0"]
    np.testing.assert_array_equal(ds.get("P7_B03_1").image, images["P7_B03_1"])
    assert ds.get("P7_B03_1").image.dtype == np.uint16


def test_resolution_level_and_config_channel_names(tmp_path):
    images = write_plate(tmp_path / "p.zarr")
    ds = open_dataset(tmp_path / "p.zarr", "omezarr", level=1, channel_names=["a", "b", "c"])
    assert ds.channel_names == ("a", "b", "c") and ds[0].image.shape == (3, 12, 10)
    with pytest.raises(LayoutError, match=r"p.zarr/A/1/0: resolution level 4 requested, .* levels 0..1"):
        open_dataset(tmp_path / "p.zarr", "omezarr", level=4)
    assert images


def test_a_folder_of_plates_and_labels_from_well_attributes(tmp_path):
    write_plate(tmp_path / "plates" / "p.zarr", labels=["DMSO", "taxol"])
    ds = open_dataset(tmp_path / "plates")
    assert ds.layout == "omezarr" and list(ds.labels) == ["DMSO", "DMSO", "taxol", "taxol"]
    assert list(ds.groups) == ["P7"] * 4


def test_malformed_plate_metadata_names_the_path(tmp_path):
    write_plate(tmp_path / "p.zarr")
    group = zarr.open_group(str(tmp_path / "p.zarr"), mode="r+")
    ome = dict(group.attrs["ome"])
    ome["plate"] = {**ome["plate"], "wells": [{"path": "A/1"}]}       # no rowIndex
    group.attrs["ome"] = ome
    with pytest.raises(LayoutError, match=r"p.zarr: malformed NGFF plate metadata .*rowIndex"):
        open_dataset(tmp_path / "p.zarr", "omezarr")


def test_a_missing_field_names_its_path(tmp_path):
    write_plate(tmp_path / "p.zarr")
    well = zarr.open_group(str(tmp_path / "p.zarr" / "B" / "3"), mode="r+")
    ome = dict(well.attrs["ome"])
    ome["well"] = {"images": [{"path": "0"}, {"path": "1"}, {"path": "2"}]}
    well.attrs["ome"] = ome
    with pytest.raises(MissingChannelError, match=r"p.zarr/B/3/2: field listed by the well is missing"):
        open_dataset(tmp_path / "p.zarr", "omezarr")
    ds = open_dataset(tmp_path / "p.zarr", "omezarr", on_error="skip")
    assert len(ds) == 4 and ds.skipped[0].path.endswith("p.zarr/B/3/2")


def test_a_channel_count_mismatch_names_the_path(tmp_path):
    write_plate(tmp_path / "p.zarr")
    with pytest.raises(ChannelShapeError, match=r"p.zarr: channel_names \['DNA', 'RNA'\] do not match the 3"):
        open_dataset(tmp_path / "p.zarr", "omezarr", channel_names=["DNA", "RNA"])
    extra = zarr.open_group(str(tmp_path / "p.zarr" / "B" / "3" / "1"), mode="w")
    write_image(np.zeros((2, 24, 20), np.uint16), extra, axes="cyx", scale_factors=[2])
    with pytest.raises(ChannelShapeError, match=r"p.zarr/B/3/1\) has 2 channels; expected 3"):
        open_dataset(tmp_path / "p.zarr", "omezarr")


def test_not_a_plate_names_the_path(tmp_path):
    zarr.open_group(str(tmp_path / "x.zarr"), mode="w")
    with pytest.raises(LayoutError, match=r"x.zarr is neither an OME-Zarr plate \(no NGFF 'plate' metadata\)"):
        open_dataset(tmp_path / "x.zarr", "omezarr")


@pytest.mark.slow
def test_convert_to_omezarr_then_extract_and_compare(tmp_path):
    from cellcompare.comparison import load_config, run
    from cellcompare.datasets.synth import make_cellpainting

    src = make_cellpainting(tmp_path / "rx", classes=2, per_class=6, size=96, plates=3)
    before = open_dataset(src)
    assert main(["convert", str(src), "--out", str(tmp_path / "zarr"), "--to", "omezarr"]) == 0
    ds = open_dataset(tmp_path / "zarr")
    assert ds.layout == "omezarr" and len(ds) == len(before) and ds.channel_names == before.channel_names
    key = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]
    ours = dict(zip(map(tuple, ds.index[key].values.tolist()), range(len(ds))))
    for i, row in enumerate(before.index[key].values.tolist()):
        j = ours[tuple(row)]
        assert ds.labels[j] == before.labels[i]
        np.testing.assert_array_equal(ds[j].image, before[i].image)
    out = tmp_path / "features"
    assert main(["extract", str(tmp_path / "zarr"), "--layout", "omezarr", "--out", str(out),
                 "--preset", "minimal"]) == 0
    table = pd.read_parquet(out / "image")
    assert len(table) == len(ds) and set(table["Metadata_Plate"]) == set(ds.groups)
    config = {"dataset": {"path": str(tmp_path / "zarr"), "layout": "omezarr"},
              "features": {"preset": "minimal", "dna_channel": "DNA", "cyto_channel": "Actin"},
              "models": ["svm"], "folds": {"n_splits": 3}, "top_k": 2, "seed": 0,
              "output": str(tmp_path / "results"), "report": False}
    (tmp_path / "c.json").write_text(json.dumps(config))
    results = run(load_config(tmp_path / "c.json"))
    metrics = json.loads((results / "metrics.json").read_text())
    assert [f["fold"] for f in metrics["models"]["svm"]["folds"]] == [0, 1, 2]

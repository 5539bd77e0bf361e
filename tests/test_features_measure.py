"""Measurements: CellProfiler names, presets, and parity with cp_measure's own featurize."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from cp_measure.featurizer import featurize, make_featurizer_config

from cellcompare.config import UnknownKeyError
from cellcompare.features import (
    FeatureConfig,
    FeatureConfigError,
    aggregate,
    extract_sample,
)
from cellcompare.features.measure import featurize_column_name, measure_objects

FAMILY_FLAGS = {"Intensity": "intensity", "Texture": "texture", "Granularity": "granularity",
                "AreaShape": "sizeshape", "Zernike": "zernike", "Feret": "feret"}


def _two_objects(size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.int32)
    labels[(yy - 12) ** 2 + (xx - 12) ** 2 < 64] = 1
    labels[(yy - 30) ** 2 + (xx - 33) ** 2 < 100] = 3          # non-consecutive on purpose
    image = rng.random((2, size, size)) * 0.5
    image[0] += (labels > 0) * 0.3
    return labels, image


def _reference(image: np.ndarray, labels: np.ndarray, channels: list[str], config: FeatureConfig,
               obj: str = "Cells") -> dict[str, np.ndarray]:
    """cp_measure.featurize on the same arrays, columns renamed to ours.

    featurize measures correlations over ordered channel pairs; CellProfiler (and we) measure
    each unordered pair once, so only the forward-ordered columns are comparable (the
    reversed Costes/Slope are different quantities under the same CellProfiler name).
    """
    fam = config.active_families
    flags = {flag: fam_name in fam for fam_name, flag in FAMILY_FLAGS.items()}
    radial = "RadialDistribution" in fam
    corr = "Correlation" in fam
    cfg = make_featurizer_config(
        channels, objects=[obj], legacy=config.convention.cp_measure_legacy, **flags, radial_distribution=radial, radial_zernikes=radial,
        texture_params={"scale": config.active_scales[0], "gray_levels": config.texture_gray_levels},
        correlation_pearson=corr, correlation_costes=corr, correlation_manders_fold=corr,
        correlation_rwc=corr, correlation_costes_params={"scale_max": 255})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, columns, _ = featurize(image[None], labels[None, None], cfg)
    ref = {}
    for j, col in enumerate(columns):
        parts = col.split("__")
        if len(parts) == 3 and channels.index(parts[1]) > channels.index(parts[2]):
            continue
        ref[featurize_column_name(obj, col)] = data[:, j]
    return ref


def _assert_parity(ours: dict, ref: dict) -> None:
    missing = sorted(set(ours) - set(ref))
    assert not missing, f"features without a cp_measure counterpart: {missing[:5]}"
    for name, values in ours.items():
        np.testing.assert_allclose(values, ref[name], rtol=1e-6, atol=1e-12, equal_nan=True,
                                   err_msg=name)


def test_standard_parity_with_cp_measure_on_synthetic_objects():
    labels, image = _two_objects()
    config = FeatureConfig(preset="standard")
    ids, ours = measure_objects("Cells", labels, image, ("A", "B"), config)
    assert list(ids) == [1, 3]
    ref = _reference(image, labels, ["A", "B"], config)
    _assert_parity(ours, ref)
    # every family of the preset is emitted, and only those
    assert {"Cells_AreaShape_Area", "Cells_Intensity_MeanIntensity_A",
            "Cells_Texture_Contrast_B_3_00_256", "Cells_Correlation_Pearson_A_B",
            "Cells_Correlation_Manders_B_A", "Cells_Correlation_Costes_A_B"} <= set(ours)
    assert not any("Granularity" in n or "Zernike" in n for n in ours)


ORDER_STATISTICS = ("LowerQuartileIntensity", "MedianIntensity", "UpperQuartileIntensity",
                    "MADIntensity")


@pytest.mark.parametrize("conventions, legacy", [("cellprofiler4", True), ("cp_measure", False)])
def test_intensity_order_statistics_follow_the_convention(conventions, legacy):
    from cp_measure.core.measureobjectintensity import get_intensity

    labels, image = _two_objects(size=48, seed=4)
    clean = np.where(labels == 3, 2, labels)
    config = FeatureConfig(preset="minimal", conventions=conventions)
    _, ours = measure_objects("Cells", labels, image, ("A", "B"), config)
    for c, channel in enumerate("AB"):
        ref = get_intensity(clean, image[c], legacy=legacy)
        other = get_intensity(clean, image[c], legacy=not legacy)
        for feature in ORDER_STATISTICS:
            got = ours[f"Cells_Intensity_{feature}_{channel}"]
            np.testing.assert_allclose(got, ref[f"Intensity_{feature}"], rtol=1e-6, atol=0)
            assert not np.allclose(got, other[f"Intensity_{feature}"], rtol=1e-6, atol=0), feature


def test_conventions_default_to_cellprofiler4_and_unknown_is_refused():
    assert FeatureConfig().conventions == "cellprofiler4" and FeatureConfig().convention.cp_measure_legacy
    with pytest.raises(FeatureConfigError, match=r"conventions must be one of \['cellprofiler4', 'cp_measure'\]"):
        FeatureConfig(conventions="cellprofiler3")
    assert FeatureConfig.from_record({"preset": "minimal"}).conventions == "cp_measure"


def test_full_parity_with_cp_measure_on_tiny_image():
    labels, image = _two_objects(size=40, seed=1)
    config = FeatureConfig(preset="full", texture_scales=(3,))
    _, ours = measure_objects("Nuclei", labels, image, ("A", "B"), config)
    ref = _reference(image, labels, ["A", "B"], config, obj="Nuclei")
    # cp_measure has no Neighbors; tests/test_features_neighbors.py checks it on closed forms
    _assert_parity({k: v for k, v in ours.items() if "_Neighbors_" not in k}, ref)
    assert "Nuclei_Neighbors_NumberOfNeighbors_Adjacent" in ours
    assert "Nuclei_Granularity_1_A" in ours
    assert "Nuclei_RadialDistribution_FracAtD_B_1of4" in ours
    assert "Nuclei_AreaShape_Zernike_2_0" in ours and "Nuclei_AreaShape_MaxFeretDiameter" in ours


EXAMPLE_MASKS = ("full", "full_2", "center", "edges", "corner_0", "corner_1", "corner_2",
                 "corner_3", "one", "two")


@pytest.mark.parametrize("name", EXAMPLE_MASKS)
def test_full_parity_on_cp_measures_example_masks(name):
    """cp_measure's own edge cases: an object filling the image (``full``, whose
    RadialDistribution needs scipy's distance for a mask without background), two filling it,
    objects on the borders and corners, one- and two-pixel objects."""
    from cp_measure.examples import get_masks, get_pixels

    masks = get_masks(size=40)
    assert set(masks) == set(EXAMPLE_MASKS)
    pixels = get_pixels(size=40) / 9.0
    image = np.stack([pixels, pixels[::-1]])
    config = FeatureConfig(preset="full", texture_scales=(3,))
    _, ours = measure_objects("Cells", masks[name], image, ("A", "B"), config)
    ref = _reference(image, masks[name], ["A", "B"], config)
    assert "Cells_RadialDistribution_FracAtD_A_1of4" in ours
    _assert_parity({k: v for k, v in ours.items() if "_Neighbors_" not in k}, ref)


def test_radial_rings_of_an_object_filling_the_image_are_cellprofilers():
    from centrosome.cpmorphology import distance_to_edge

    from cellcompare.features.radial import _distance_to_edge

    labels = np.ones((5, 7), np.int32)
    np.testing.assert_array_equal(_distance_to_edge(labels), distance_to_edge(labels))
    assert _distance_to_edge(labels)[0, :3].tolist() == [1.0, np.sqrt(2), np.sqrt(5)]


def test_parity_on_example_fly(example_fly):
    import tifffile

    from cellcompare.features import segment_nuclei

    stems = [p.name[:-6] for p in sorted(example_fly.glob("*_D.TIF"))][:1]
    planes = [tifffile.imread(example_fly / f"{stems[0]}_{s}.TIF") for s in "DF"]
    image = np.stack(planes)[:, :96, :96].astype(np.float64) / 65535.0
    labels = segment_nuclei(image[0], min_area=10)
    assert labels.max() >= 2
    for preset in ("standard", "full"):
        config = FeatureConfig(preset=preset, texture_scales=(3,))
        _, ours = measure_objects("Nuclei", labels, image, ("D", "F"), config)
        ref = _reference(image, labels, ["D", "F"], config, obj="Nuclei")
        _assert_parity({k: v for k, v in ours.items() if "_Neighbors_" not in k}, ref)


def test_full_parity_on_a_segmented_cell_painting_crop(tmp_path):
    """Every object type of a segmented Cell Painting crop, all families, against cp_measure.

    Three of the six channels are measured (cp_measure's featurize takes ~15 s per channel
    pair set here); segmentation uses them all."""
    from cellcompare.datasets import open_dataset
    from cellcompare.datasets.synth import make_cellpainting
    from cellcompare.features.extract import _channel_names, segment_sample

    root = make_cellpainting(tmp_path / "d", classes=1, per_class=1, size=128, plates=1)
    sample = open_dataset(root)[0]
    names = _channel_names(sample)
    image = sample.float_image.astype(np.float64)
    config = FeatureConfig(preset="full", texture_scales=(3,))
    masks = segment_sample(image, names, config, sample.id)
    assert masks["Nuclei"].max() >= 5
    keep = [0, 2, 4]
    sub, channels = image[keep], tuple(names[k] for k in keep)
    for obj in ("Nuclei", "Cells", "Cytoplasm"):
        _, ours = measure_objects(obj, masks[obj], sub, channels, config)
        ref = _reference(sub, masks[obj], list(channels), config, obj=obj)
        _assert_parity({k: v for k, v in ours.items() if "_Neighbors_" not in k}, ref)


def test_disk_area_and_intensity_closed_form():
    yy, xx = np.mgrid[:41, :41]
    labels = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 100).astype(np.int32)
    image = np.full((1, 41, 41), 0.25)
    _, feats = measure_objects("Nuclei", labels, image, ("DNA",), FeatureConfig(preset="minimal"))
    assert feats["Nuclei_AreaShape_Area"][0] == labels.sum()
    assert feats["Nuclei_Intensity_MeanIntensity_DNA"][0] == pytest.approx(0.25)
    assert feats["Nuclei_Intensity_IntegratedIntensity_DNA"][0] == pytest.approx(0.25 * labels.sum())


def test_families_override_preset_and_bad_values_raise(tmp_path):
    cfg = FeatureConfig(preset="full", families=("Intensity",))
    assert cfg.active_families == ("Intensity",)
    assert FeatureConfig(preset="standard", texture_scales=(3, 5)).active_scales == (3,)
    with pytest.raises(FeatureConfigError, match="preset"):
        FeatureConfig(preset="huge")
    with pytest.raises(FeatureConfigError, match="Spectral"):
        FeatureConfig(families=("Spectral",))
    path = tmp_path / "f.yaml"
    path.write_text("features:\n  preset: minimal\n  texture_scales: [3, 5]\n  dna_channel: DNA\n")
    loaded = FeatureConfig.from_yaml(path)
    assert loaded == FeatureConfig(preset="minimal", texture_scales=(3, 5), dna_channel="DNA")
    with pytest.raises(UnknownKeyError, match="'colour'"):
        FeatureConfig.from_dict({"colour": 1})


def test_aggregate_median_mean_and_zero_cells():
    cells = pd.DataFrame({"Metadata_ObjectNumber": [1, 2, 3], "Cells_X": [1.0, 2.0, 6.0]})
    row = aggregate(cells, {"Metadata_sample_id": "s"})
    assert row.loc[0, "Cells_X"] == 2.0 and row.loc[0, "Cells_X__mean"] == 3.0
    assert row.loc[0, "Metadata_Object_Count"] == 3
    empty = aggregate(cells.iloc[:0], {"Metadata_sample_id": "e"})
    assert empty.loc[0, "Metadata_Object_Count"] == 0 and np.isnan(empty.loc[0, "Cells_X__mean"])


class _FakeSample:
    def __init__(self, image, names):
        self.id, self.label, self.group = "s1", "a", "p1"
        self.image = image
        self.metadata = {"channel_names": names}
        self.paths = ()

    @property
    def float_image(self):
        return self.image.astype(np.float32) / 255.0


def test_extract_sample_tables_follow_contract():
    yy, xx = np.mgrid[:64, :64]
    dna = np.zeros((64, 64))
    for cy, cx in [(16, 16), (44, 40)]:
        dna[(yy - cy) ** 2 + (xx - cx) ** 2 < 49] = 200
    cyto = np.zeros((64, 64))
    for cy, cx in [(16, 16), (44, 40)]:
        cyto[(yy - cy) ** 2 + (xx - cx) ** 2 < 144] = 120
    image = np.stack([dna, cyto]).astype(np.uint8)
    sample = _FakeSample(image, ("DNA", "Actin"))
    cells, row = extract_sample(sample, FeatureConfig(preset="minimal", cyto_channel="Actin", threshold_method="otsu"),
                                image_number=7)
    assert len(cells) == 2 and list(cells["Metadata_ObjectNumber"]) == [1, 2]
    assert (cells["Metadata_ImageNumber"] == 7).all() and (cells["Metadata_label"] == "a").all()
    assert cells["Nuclei_AreaShape_Area"].between(140, 160).all()
    assert (cells["Cells_AreaShape_Area"] > cells["Nuclei_AreaShape_Area"]).all()
    np.testing.assert_allclose(cells["Cytoplasm_AreaShape_Area"],
                               cells["Cells_AreaShape_Area"] - cells["Nuclei_AreaShape_Area"])
    assert row.loc[0, "Metadata_Object_Count"] == 2
    assert "Cells_Intensity_MeanIntensity_Actin__mean" in row
    assert sorted(cells["Metadata_Location_Center_X"].round()) == [16, 40]
    blank = _FakeSample(np.zeros((2, 64, 64), np.uint8), ("DNA", "Actin"))
    cells0, row0 = extract_sample(blank, FeatureConfig(preset="minimal"))
    assert len(cells0) == 0 and row0.loc[0, "Metadata_Object_Count"] == 0


def test_whole_object_mode_measures_one_cell():
    yy, xx = np.mgrid[:64, :64]
    disk = ((yy - 32) ** 2 + (xx - 30) ** 2 <= 400).astype(np.uint8) * 180
    sample = _FakeSample(np.stack([disk, disk // 2]), ("C1", "C2"))
    cells, row = extract_sample(sample, FeatureConfig(preset="minimal", whole_object=True))
    assert len(cells) == 1 and row.loc[0, "Metadata_Object_Count"] == 1
    assert cells.loc[0, "Cells_AreaShape_Area"] == pytest.approx(np.pi * 400, rel=0.03)
    assert not any(c.startswith("Nuclei_") for c in cells.columns)
    assert cells.loc[0, "Metadata_Location_Center_X"] == pytest.approx(30, abs=0.5)


@pytest.mark.parametrize("scale,levels", [(1, 8), (3, 256), (5, 64)])
def test_sparse_texture_equals_cp_measure(scale, levels):
    from cp_measure.core.measuretexture import get_texture as reference

    from cellcompare.features.texture import get_texture

    labels, image = _two_objects(size=56, seed=scale)
    labels[50:53, 2:40] = 4                          # thin object: NaN at larger scales
    ours = get_texture(labels, image[0], scale, levels)
    ref = reference(labels, image[0], scale, levels)
    assert list(ours) == list(ref)
    for key in ref:
        np.testing.assert_allclose(ours[key], ref[key], rtol=1e-6, atol=1e-12, equal_nan=True,
                                   err_msg=key)
    assert np.isnan(ours[f"Contrast_{scale}_02_{levels}"][2]) == (scale > 2)


@pytest.mark.parametrize("seed,mix", [(3, 0.6), (4, 0.0), (5, -0.5)])
def test_correlation_kernel_equals_cp_measure(seed, mix):
    from cp_measure.core import measurecolocalization as mc

    from cellcompare.features.correlation import correlate_pairs
    from cellcompare.features.grouping import group_pixels

    labels, image = _two_objects(size=64, seed=seed)
    image[1] = np.clip(mix * image[0] + (1 - abs(mix)) * image[1] + max(0.0, -mix), 0, 1)
    labels[labels == 3] = 2                           # cp_measure wants labels 1..N here
    labels[60:63, 60:63] = 3                          # 9-pixel object
    labels[0, 63] = 4                                 # 1-pixel object: NaN/0 rules
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = {}
        for func in (mc.get_correlation_pearson, mc.get_correlation_manders_fold,
                     mc.get_correlation_rwc):
            ref.update(func(image[0], image[1], labels))
        ref.update(mc.get_correlation_costes(image[0], image[1], labels, scale_max=255))
        (ours,) = correlate_pairs(group_pixels(labels), image, [(0, 1)], scale_max=255)
    assert list(ours) == list(ref)
    for key, expected in ref.items():
        np.testing.assert_allclose(ours[key], expected, rtol=1e-6, atol=1e-12, equal_nan=True,
                                   err_msg=key)
    assert np.isfinite(ours["Correlation_Pearson"][:2]).all()


def test_correlation_rejects_pixels_outside_unit_range():
    from cellcompare.features.correlation import correlate_pairs
    from cellcompare.features.grouping import group_pixels

    labels, image = _two_objects(size=32)
    image[1, 12, 12] = 1.5
    with pytest.raises(ValueError, match=r"channel 1 spans"):
        correlate_pairs(group_pixels(labels), image, [(0, 1)])

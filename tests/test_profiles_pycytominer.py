"""Our feature tables in pycytominer's workflow, and normalisation by negative controls."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellcompare.classical import make_classifier
from cellcompare.classical.errors import MissingMetadataError
from cellcompare.classical.preprocess import NoControlsError, TableScaler
from cellcompare.datasets.synth import make_cellpainting
from cellcompare.features import FeatureConfig, load_table, run_extraction

pycytominer = pytest.importorskip("pycytominer")

CONTROLS = "Metadata_WellType == 'negative_control'"
# pycytominer divides features that are constant within the controls by zero (NaN, warned)
pytestmark = [pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:After omitting NaNs")]


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """Image and cell tables of 2 plates x (2 treated + 2 control wells), one site per well."""
    root = tmp_path_factory.mktemp("profiles")
    data = make_cellpainting(root / "data", classes=2, per_class=2, size=64, plates=2,
                             controls_per_plate=2, seed=1)
    config = FeatureConfig.from_dict({"preset": "minimal", "dna_channel": "DNA",
                                      "cyto_channel": "Actin"})
    run_extraction(data, root / "feats", config, jobs=1)
    return (load_table(root / "feats", "image"), load_table(root / "feats", "cell"),
            pd.read_csv(data / "metadata.csv", dtype={"well": str}))


def _features(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if not c.startswith("Metadata_") and not c.endswith("__mean")]


def test_tables_carry_plate_well_site_columns(tables):
    images, cells, metadata = tables
    for table in (images, cells):
        for column in ("Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Experiment",
                       "Metadata_CellType", "Metadata_WellType", "Metadata_label", "Metadata_group"):
            assert column in table.columns, column
    expected = metadata.set_index("site_id")
    row = images.set_index("Metadata_sample_id").loc[expected.index]
    assert list(row["Metadata_Plate"]) == [f"HEPG2-01_P{p}" for p in expected["plate"]]
    assert list(row["Metadata_Well"]) == list(expected["well"])
    assert list(row["Metadata_Site"]) == [str(s) for s in expected["site"]]
    assert list(row["Metadata_WellType"]) == list(expected["well_type"])
    assert (images["Metadata_WellType"] == "negative_control").sum() == 4


def test_pycytominer_aggregate_by_plate_and_well_matches_our_medians(tables):
    images, cells, _ = tables
    feats = _features(images)
    profiles = pycytominer.aggregate(cells, strata=["Metadata_Plate", "Metadata_Well"],
                                     features=feats, operation="median")
    assert profiles.shape == (8, 2 + len(feats))
    # one site per well: pycytominer's per-well median over cells is our per-image median
    ours = images.set_index(["Metadata_Plate", "Metadata_Well"])[feats].sort_index()
    theirs = profiles.set_index(["Metadata_Plate", "Metadata_Well"])[feats].sort_index()
    # features are stored as float32: the median of stored cells and the stored median of the
    # float64 cells agree to float32 resolution of each feature's scale (2e-6 of its largest value)
    values = np.abs(ours.to_numpy(float))
    scale = values.max(axis=0, initial=0.0, where=~np.isnan(values))
    scale[scale == 0] = 1.0
    np.testing.assert_allclose(theirs.to_numpy(float) / scale, ours.to_numpy(float) / scale,
                               rtol=0, atol=2e-6, equal_nan=True)


@pytest.mark.parametrize(("ours", "theirs"), [("controls", "standardize"),
                                              ("controls_robust", "mad_robustize")])
def test_controls_normalisation_equals_pycytominer_per_plate(tables, ours, theirs):
    images, cells, _ = tables
    feats = _features(images)
    platemap = images[["Metadata_Plate", "Metadata_Well", "Metadata_WellType"]].drop_duplicates()
    profiles = pycytominer.aggregate(cells, strata=["Metadata_Plate", "Metadata_Well"],
                                     features=feats).merge(platemap, on=["Metadata_Plate", "Metadata_Well"])
    meta = ["Metadata_Plate", "Metadata_Well", "Metadata_WellType"]
    reference = pd.concat([
        pycytominer.normalize(plate, features=feats, meta_features=meta, samples=CONTROLS,
                              method=theirs, mad_robustize_epsilon=0.0)
        for _, plate in profiles.groupby("Metadata_Plate")]).sort_index()
    scaled = TableScaler(ours).fit(profiles[meta + feats]).transform(profiles[meta + feats])
    controls = profiles["Metadata_WellType"] == "negative_control"
    spread = profiles[controls].groupby("Metadata_Plate")[feats].std().min()
    usable = [f for f in feats if spread[f] > 1e-3]  # pycytominer divides by 0, we floor at eps
    assert len(usable) > 20
    cols = [feats.index(f) for f in usable]
    np.testing.assert_allclose(scaled[:, cols], reference[usable].to_numpy(float), rtol=1e-6, atol=1e-9)
    if ours == "controls":  # each plate's controls end at mean 0, standard deviation 1
        for plate in profiles["Metadata_Plate"].unique():
            rows = (profiles["Metadata_Plate"] == plate).to_numpy() & controls.to_numpy()
            np.testing.assert_allclose(scaled[rows][:, cols].mean(axis=0), 0.0, atol=1e-9)
            np.testing.assert_allclose(scaled[rows][:, cols].std(axis=0), 1.0, rtol=1e-6)


def test_pycytominer_feature_select_on_normalised_profiles(tables):
    images, _, _ = tables
    feats = _features(images)
    meta = [c for c in images.columns if c.startswith("Metadata_")]
    normalized = pycytominer.normalize(images[meta + feats], features=feats, meta_features=meta,
                                       samples=CONTROLS, method="standardize")
    selected = pycytominer.feature_select(
        normalized, features=feats, operation=["drop_na_columns", "variance_threshold",
                                               "correlation_threshold"], corr_threshold=0.9)
    no_corr = pycytominer.feature_select(
        normalized, features=feats, operation=["drop_na_columns", "variance_threshold"])
    kept = [c for c in selected.columns if not c.startswith("Metadata_")]
    assert len(selected) == len(images) == 8
    assert set(meta) <= set(selected.columns)
    assert 0 < len(kept) < no_corr.shape[1] - len(meta) < len(feats)
    assert set(kept) <= set(feats)
    # features constant in the controls divide by 0 in pycytominer and are dropped as NaN
    assert np.isfinite(selected[kept].to_numpy(float)).mean() > 0.95
    np.testing.assert_allclose(selected[kept].to_numpy(float), normalized[kept].to_numpy(float))


def test_classifier_with_controls_normalisation_predicts_every_row(tables):
    images, _, _ = tables
    y = images["Metadata_label"].to_numpy()
    model = make_classifier("xgboost", normalize="controls", corr_threshold=None).fit(images, y)
    proba = model.predict_proba(images)
    assert proba.shape == (8, 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert set(model.classes_) == {"EMPTY", "siRNA_0001", "siRNA_0002"}


def _table(plates, well_types, values) -> pd.DataFrame:
    return pd.DataFrame({"Metadata_Plate": plates, "Metadata_WellType": well_types,
                         "Metadata_group": plates, "f": np.asarray(values, dtype=float)})


def test_controls_scaler_uses_each_plates_controls_closed_form():
    X = _table(["A"] * 3 + ["B"] * 3, ["negative_control", "negative_control", "treatment"] * 2,
               [1.0, 3.0, 5.0, 10.0, 14.0, 20.0])
    out = TableScaler("controls").fit(X).transform(X)[:, 0]
    # plate A controls: mean 2, sd 1; plate B controls: mean 12, sd 2
    np.testing.assert_allclose(out, [-1.0, 1.0, 3.0, -1.0, 1.0, 4.0])


def test_controls_robust_scaler_uses_median_and_mad():
    X = _table(["A"] * 4, ["negative_control"] * 3 + ["treatment"], [1.0, 2.0, 6.0, 5.0])
    out = TableScaler("controls_robust").fit(X).transform(X)[:, 0]
    # controls median 2, MAD 1 -> scale 1.4826
    np.testing.assert_allclose(out, (np.array([1.0, 2.0, 6.0, 5.0]) - 2.0) / 1.4826)


def test_unseen_plate_is_normalised_by_its_own_controls():
    train = _table(["A"] * 3, ["negative_control", "negative_control", "treatment"], [1.0, 3.0, 5.0])
    test = _table(["C"] * 3, ["negative_control", "negative_control", "treatment"], [100.0, 104.0, 106.0])
    out = TableScaler("controls").fit(train).transform(test)[:, 0]
    np.testing.assert_allclose(out, [-1.0, 1.0, 2.0])
    pooled = TableScaler("controls", unseen_groups="global").fit(train).transform(test)[:, 0]
    np.testing.assert_allclose(pooled, [98.0, 102.0, 104.0])


def test_plate_without_controls_raises_naming_the_plate():
    X = _table(["A", "A", "B", "B"], ["negative_control", "negative_control", "treatment", "treatment"],
               [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(NoControlsError, match="plate 'B' has 0 negative-control rows"):
        TableScaler("controls").fit(X)


def test_controls_without_well_type_column_raises():
    X = _table(["A", "A"], ["negative_control"] * 2, [1.0, 2.0]).drop(columns="Metadata_WellType")
    with pytest.raises(MissingMetadataError, match="Metadata_WellType"):
        TableScaler("controls").fit(X)


def test_generator_writes_untreated_controls_on_every_plate(tmp_path):
    with_controls = make_cellpainting(tmp_path / "a", classes=2, per_class=3, size=48, plates=3,
                                      controls_per_plate=2, seed=4)
    without = make_cellpainting(tmp_path / "b", classes=2, per_class=3, size=48, plates=3, seed=4)
    meta = pd.read_csv(with_controls / "metadata.csv")
    controls = meta[meta.well_type == "negative_control"]
    assert sorted(controls.groupby("plate").size().to_dict().items()) == [(1, 2), (2, 2), (3, 2)]
    assert set(controls.sirna) == {"EMPTY"}
    assert set(meta[meta.well_type != "negative_control"].well_type) == {"treatment"}
    # adding controls leaves the treated wells' images untouched
    treated = pd.read_csv(without / "metadata.csv")
    for row in treated.itertuples():
        name = f"images/{row.experiment}/Plate{row.plate}/{row.well}_s{row.site}_w1.png"
        assert (with_controls / name).read_bytes() == (without / name).read_bytes()

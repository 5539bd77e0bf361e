"""Folds: stratified, grouped without overlap, saved once, deterministic, with clear errors."""

import numpy as np
import pandas as pd
import pytest

from cellcompare.comparison.config import FoldsConfig
from cellcompare.comparison.splits import (
    FoldError,
    FoldMismatchError,
    LeakageError,
    cell_folds,
    check_no_leakage,
    folds_for,
    load_folds,
    make_folds,
    save_folds,
)


def _index(classes=3, per_class=10, plates=5):
    rows = []
    for c in range(classes):
        for i in range(per_class):
            rows.append({"sample_id": f"s{c}_{i}", "label": f"class{c}", "group": f"P{i % plates}"})
    return pd.DataFrame(rows)


def test_stratified_folds_balance_classes():
    folds = make_folds(_index(), FoldsConfig(n_splits=5), seed=0)
    counts = folds.groupby(["fold", "label"]).size().unstack()
    assert counts.shape == (5, 3)
    assert (counts == 2).all().all()  # 10 images per class over 5 folds
    assert list(folds.columns) == ["sample_id", "label", "group", "fold"]


def test_grouped_folds_keep_groups_apart():
    folds = make_folds(_index(), FoldsConfig(n_splits=5, group_column="group"), seed=0)
    assert (folds.groupby("group").fold.nunique() == 1).all()
    for k in range(5):
        test_groups = set(folds.group[folds.fold == k])
        train_groups = set(folds.group[folds.fold != k])
        assert not test_groups & train_groups


@pytest.mark.parametrize("well_columns", [("well_id",), ("Metadata_Plate", "Metadata_Well")])
def test_sites_of_one_well_stay_in_one_fold_without_a_group_column(well_columns):
    index = _index(per_class=12)
    well = index["sample_id"].str.replace(r"_(\d+)$", lambda m: f"_w{int(m[1]) // 2}", regex=True)
    if well_columns == ("well_id",):
        index["well_id"] = well
    else:
        index["Metadata_Plate"], index["Metadata_Well"] = "P1", well
    folds = make_folds(index, FoldsConfig(n_splits=3), seed=0)
    assert (folds.groupby(well.to_numpy()).fold.nunique() == 1).all()       # 2 sites, 1 fold
    assert list(folds["group"]) == list(index["group"])                      # groups unchanged
    assert (folds.groupby(["fold", "label"]).size() == 4).all()              # still stratified
    plain = make_folds(_index(per_class=12), FoldsConfig(n_splits=3), seed=0)
    assert (plain.groupby(well.to_numpy()).fold.nunique() > 1).any()          # what it prevents


def test_folds_are_deterministic_and_seed_dependent():
    a = make_folds(_index(), FoldsConfig(n_splits=5), seed=3)
    b = make_folds(_index(), FoldsConfig(n_splits=5), seed=3)
    c = make_folds(_index(), FoldsConfig(n_splits=5), seed=4)
    assert a.equals(b)
    assert not a.fold.equals(c.fold)


def test_folds_csv_round_trip(tmp_path):
    folds = make_folds(_index(), FoldsConfig(n_splits=5, group_column="group"), seed=0)
    loaded = load_folds(save_folds(folds, tmp_path / "folds.csv"))
    pd.testing.assert_frame_equal(loaded, folds, check_dtype=False)


def test_folds_for_reuses_and_checks_saved_file(tmp_path):
    path = tmp_path / "folds.csv"
    first = folds_for(path, _index(), FoldsConfig(n_splits=5), seed=0)
    again = folds_for(path, _index(), FoldsConfig(n_splits=5), seed=0)
    assert (first.fold.to_numpy() == again.fold.to_numpy()).all()
    with pytest.raises(FoldMismatchError, match="folds.csv"):
        folds_for(path, _index(per_class=11), FoldsConfig(n_splits=5), seed=0)


def test_folds_of_images_without_a_group_are_reused(tmp_path):
    """Class folders have no group (None): the second run reads back the folds it saved."""
    index = _index().assign(group=None)
    path = tmp_path / "folds.csv"
    first = folds_for(path, index, FoldsConfig(n_splits=5), seed=0)
    assert (first.group == "").all()
    again = folds_for(path, index, FoldsConfig(n_splits=5), seed=0)
    assert again.fold.tolist() == first.fold.tolist()
    assert again.group.tolist() == [""] * len(index)


def test_folds_log_names_the_unit(caplog):
    caplog.set_level("INFO", logger="cellcompare.comparison.splits")
    make_folds(_index(), FoldsConfig(n_splits=5), seed=0, unit_name="cells")
    assert "30 cells in 5 folds" in caplog.text
    with pytest.raises(FoldError, match="needs at least 5 cells per class"):
        make_folds(_index(per_class=4), FoldsConfig(n_splits=5), seed=0, unit_name="cells")


def test_holdout_is_separate_and_stratified():
    folds = make_folds(_index(per_class=12), FoldsConfig(n_splits=3, holdout_fraction=0.25), seed=0)
    held = folds[folds.fold == -1]
    assert len(held) == 9 and set(held.label.value_counts()) == {3}
    assert set(folds.fold[folds.fold >= 0]) == {0, 1, 2}


def test_class_with_too_few_images_is_explained():
    index = pd.concat([_index(), pd.DataFrame({"sample_id": ["r1", "r2"], "label": ["rare"] * 2,
                                               "group": ["P0", "P1"]})])
    with pytest.raises(FoldError, match=r"'rare' has 2.*fewer folds.*exclude_classes"):
        make_folds(index, FoldsConfig(n_splits=5), seed=0)


def test_grouping_that_leaves_a_fold_without_a_class_is_refused():
    index = _index(plates=5)
    index.loc[index.label == "class0", "group"] = "P0"  # class0 lives on one plate only
    with pytest.raises(FoldError, match=r"class0.*1 group"):
        make_folds(index, FoldsConfig(n_splits=5, group_column="group"), seed=0)


def test_unknown_group_column_names_it():
    with pytest.raises(FoldError, match="'plate'"):
        make_folds(_index(), FoldsConfig(n_splits=5, group_column="plate"), seed=0)


def test_leakage_check_fires_on_a_leaky_split():
    folds = make_folds(_index(), FoldsConfig(n_splits=5), seed=0)  # not grouped: plates straddle
    with pytest.raises(LeakageError, match="group 'P"):
        check_no_leakage(folds, grouped=True)
    duplicated = pd.concat([folds, folds.iloc[:1].assign(fold=(folds.fold.iloc[0] + 1) % 5)])
    with pytest.raises(LeakageError, match="s0_0"):
        check_no_leakage(duplicated, grouped=False)


def test_cells_follow_their_image():
    folds = make_folds(_index(), FoldsConfig(n_splits=5), seed=0)
    cells = pd.DataFrame({"Metadata_sample_id": np.repeat(folds.sample_id.to_numpy(), 3)})
    cells["fold"] = cell_folds(cells, folds)
    check_no_leakage(folds, grouped=False, cells=cells)
    assert (cells.groupby("Metadata_sample_id").fold.nunique() == 1).all()
    cells.loc[0, "fold"] = (cells.loc[0, "fold"] + 1) % 5  # one cell wanders off
    with pytest.raises(LeakageError, match="cells of images"):
        check_no_leakage(folds, grouped=False, cells=cells)

"""Per-cell questions on one to a few images (issue 26): CellProfiler Analyst's workflow.

One unlabelled synthetic image of ~280 cells (~4 % mitotic, gated on a marker channel kept
from the models), three images, a class of four cells; fetch's round trip into annotations;
score on new images.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cellcompare.classical import TooFewMembersError, make_classifier
from cellcompare.cli import main
from cellcompare.comparison import load_config, run
from cellcompare.comparison.config import FoldsConfig
from cellcompare.comparison.preflight import PreflightError
from cellcompare.comparison.splits import make_folds
from cellcompare.datasets.synth import make_cellpainting

CHANNELS = ["DNA", "ER", "Actin", "RNA", "Mito", "Golgi", "Marker"]
GATE = {"level": "cell", "source": "gate",
        "gate": {"feature": "Nuclei_Intensity_MeanIntensity_Marker", "above": "mitotic",
                 "below": "interphase"}}
SVM = {"name": "svm", "granularity": "cell", "params": {"class_weight": "balanced"}}
XGB = {"name": "xgboost", "granularity": "cell", "params": {"class_weight": "balanced"}}
CNN = {"name": "smallcnn", "granularity": "cell",
       "params": {"weights": "none", "crop_size": 32, "image_size": 32, "epochs": 8, "batch_size": 32,
                  "lr": 0.003, "class_weight": "balanced", "val_fraction": 0.0, "amp": False,
                  "progress": False}}


def _data(root, *, per_class=1, size=1160, seed=5, unlabelled=True):
    data = make_cellpainting(root, classes=1, per_class=per_class, size=size, plates=1, seed=seed,
                             mitotic_fraction=0.05)
    if unlabelled:  # per-cell labels need no image label: blank the metadata's
        meta = pd.read_csv(data / "metadata.csv")
        meta["sirna"] = ""
        meta.to_csv(data / "metadata.csv", index=False)
    return data


def _run(tmp, data, name, **sections):
    config = {"dataset": {"path": str(data), "layout": "rxrx1", "options": {"channel_names": CHANNELS}},
              "features": {"preset": "minimal", "dna_channel": "DNA", "cyto_channel": "Actin"},
              "labels": GATE, "models": [SVM], "folds": {"n_splits": 3, "group_column": "none"},
              "top_k": 1, "report": False, "output": str(tmp / name), **sections}
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(config))
    return run(load_config(path))


def _truth(data):
    meta = pd.read_csv(data / "metadata.csv")
    return pd.concat([pd.read_csv(data / "truth" / f"{s}_cells.csv").assign(sample_id=s)
                      for s in meta.site_id], ignore_index=True)


@pytest.fixture(scope="module")
def one_image(tmp_path_factory):
    """One unlabelled image, ungrouped cell folds, every model; svm and smallcnn exported."""
    tmp = tmp_path_factory.mktemp("one")
    data = _data(tmp / "data")
    out = _run(tmp, data, "res", models=[SVM, XGB, CNN], export_models=["svm", "smallcnn"])
    return tmp, data, out, json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def new_images(one_image):
    """The training plate again (same seed): its first image was trained on, the second is new."""
    tmp = one_image[0]
    return _data(tmp / "new", per_class=2, size=1160, seed=5)


@pytest.fixture(scope="module")
def three_images(tmp_path_factory):
    return _data(tmp_path_factory.mktemp("three") / "data", per_class=3, size=560, seed=2,
                 unlabelled=False)


def test_one_unlabelled_image_trains_every_model_on_its_cells(one_image):
    _, _, out, metrics = one_image
    counts = metrics["labels"]["class_counts"]
    assert metrics["dataset"]["n_images"] == 1 and sum(counts.values()) > 250
    assert 0.02 < counts["mitotic"] / sum(counts.values()) < 0.08
    folds = pd.read_csv(out / "folds.csv", dtype=str)
    assert folds.fold.nunique() == 3 and (folds.group == folds.sample_id).all()  # not grouped
    assert metrics["preflight"]["checked"] and metrics["preflight"]["unit"] == "cells"
    for model in ("svm", "xgboost", "smallcnn"):  # a prior-only model scores 0.5
        assert metrics["models"][model]["summary"]["balanced_accuracy"]["mean"] >= 0.85, model


def test_cell_task_writes_per_image_fractions_truth_and_predicted(one_image):
    _, _, out, metrics = one_image
    table = pd.read_csv(out / "cells" / "fractions.csv")
    counts = metrics["labels"]["class_counts"]
    assert len(table) == 1 and table.n_cells[0] == sum(counts.values())
    assert table.n_truth[0] == counts["mitotic"]
    assert table.fraction_truth[0] == pytest.approx(counts["mitotic"] / sum(counts.values()))
    preds = pd.read_parquet(out / "predictions.parquet")
    svm = preds[(preds.model == "svm") & (preds.fold >= 0)]
    assert table.fraction_svm[0] == pytest.approx((svm.proba_mitotic > svm.proba_interphase).mean())
    preview = pd.read_csv(out / "cells" / "fetch_preview.csv")
    margins = (preview.probability - (1 - preview.probability)).to_numpy()
    assert len(preview) == 12 and (np.diff(margins) >= -1e-12).all()  # most uncertain first


def test_fetch_positive_writes_the_annotation_csv_and_a_contact_sheet(one_image):
    from cellcompare.comparison.fetch import fetch_cells

    tmp, _, out, _ = one_image
    fetched = fetch_cells(out, n=15, kind="positive", out=tmp / "fetch")
    table = pd.read_csv(fetched.csv, keep_default_na=False)
    assert list(table.columns[:4]) == ["sample_id", "x", "y", "label"] and (table.label == "").all()
    assert len(table) == 15 and (np.diff(table.probability) <= 0).all()
    truth = pd.read_parquet(out / "cells" / "labels.parquet").set_index("Metadata_cell_id")
    assert (truth.label.reindex(table.Metadata_cell_id).iloc[:5] == "mitotic").all()
    assert fetched.sheet.stat().st_size > 1000 and fetched.sheet.read_bytes()[:4] == b"\x89PNG"
    assert main(["fetch", str(out), "--n", "5", "--kind", "uncertain", "--out", str(tmp / "cli")]) == 0
    uncertain = pd.read_csv(tmp / "cli" / "uncertain.csv")
    assert len(uncertain) == 5 and (tmp / "cli" / "uncertain.png").is_file()
    margin = (2 * uncertain.probability - 1).to_numpy()  # two classes: p1 - p2
    assert (np.diff(margin) >= -1e-12).all()
    again = fetch_cells(out, n=5, kind="random", out=tmp / "r1")
    twice = fetch_cells(out, n=5, kind="random", out=tmp / "r2")
    assert pd.read_csv(again.csv).Metadata_cell_id.tolist() == pd.read_csv(twice.csv).Metadata_cell_id.tolist()


@pytest.mark.parametrize("model", ["svm", "smallcnn"])
def test_score_counts_every_cell_of_new_images_per_image_and_well(one_image, new_images, model):
    from cellcompare.datasets import open_dataset
    from cellcompare.serve import load_predictor
    from cellcompare.serve.score import score_dataset

    tmp, _, out, metrics = one_image
    new = new_images
    ds = open_dataset(new, layout="rxrx1", channel_names=CHANNELS, unlabelled="keep")
    scored = score_dataset(load_predictor(out / "models" / model), ds, tmp / f"scores_{model}")
    assert scored.positive == "mitotic" and scored.n_failed == 0
    cells = pd.read_parquet(scored.files["cells"])
    images = pd.read_csv(scored.files["images"])
    assert len(images) == 2 and images.n_cells.sum() == len(cells) == scored.n_cells
    per_image = cells.groupby("Metadata_sample_id").predicted.apply(lambda p: (p == "mitotic").mean())
    np.testing.assert_allclose(images.set_index("sample_id").fraction_mitotic.loc[per_image.index],
                               per_image.to_numpy())
    truth = _truth(new)
    rate = (truth.state == "mitotic").mean()
    assert abs(images.n_mitotic.sum() / images.n_cells.sum() - rate) < 0.03  # close to the truth
    wells = pd.read_csv(scored.files["wells"])
    assert set(wells.well) == set(images.well) and len(wells) == 2
    plate = [p for k, p in scored.files.items() if k.startswith("plate_")]
    assert len(plate) == 1 and plate[0].read_bytes()[:4] == b"\x89PNG"
    config = tmp / "dataset.yaml"
    config.write_text(f"dataset:\n  layout: rxrx1\n  options: {{channel_names: {CHANNELS}}}\n")
    cli_out = tmp / f"cli_scores_{model}"
    assert main(["score", str(out / "models" / model), str(new), "--dataset-config", str(config),
                 "--out", str(cli_out)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(cli_out / "images.csv"), images)


def test_three_images_fold_cells_by_image_and_train_on_cells(tmp_path, three_images):
    data = three_images
    out = _run(tmp_path, data, "three", models=[SVM, XGB], folds={"n_splits": 3})
    folds = pd.read_csv(out / "folds.csv", dtype=str)
    image = folds.sample_id.str.rsplit("#", n=1).str[0]
    assert image.nunique() == 3 and (folds.groupby(image).fold.nunique() == 1).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labels"]["fold_groups"] == "image"
    for model in ("svm", "xgboost"):
        assert metrics["models"][model]["summary"]["balanced_accuracy"]["mean"] >= 0.8, model


def test_three_images_refuse_tuning_folds_they_cannot_group(tmp_path, three_images):
    data = three_images
    tuned = {**SVM, "params": {"class_weight": "balanced", "tune": True, "inner_folds": 3}}
    with pytest.raises(PreflightError, match=r"needs 3 training groups per class for its inner tuning"):
        _run(tmp_path, data, "tuned", models=[tuned], folds={"n_splits": 3})


@pytest.mark.parametrize("n_splits, message", [
    (5, r"5-fold cross-validation needs 5 cells per class; .*'mitotic' \(4 cells\)"),
    (3, r"svm needs 3 training cells per class for its calibration folds; .*'mitotic' \(4 cells\)"),
])
def test_a_class_of_four_cells_is_refused_naming_it_and_its_count(tmp_path, n_splits, message):
    data = _data(tmp_path / "data", size=560, seed=5)
    truth = _truth(data)
    points = pd.concat([truth[truth.state == "mitotic"].head(4), truth[truth.state != "mitotic"].head(30)])
    points.rename(columns={"state": "label"})[["sample_id", "x", "y", "label"]].to_csv(
        tmp_path / "points.csv", index=False)
    labels = {"level": "cell", "source": "annotations",
              "annotations": {"path": str(tmp_path / "points.csv"), "radius": 6}}
    with pytest.raises(PreflightError, match=message):
        _run(tmp_path, data, "four", labels=labels, folds={"n_splits": n_splits, "group_column": "none"})


def test_fetched_cells_go_straight_back_into_annotations(tmp_path):
    from cellcompare.comparison.fetch import fetch_cells

    data = _data(tmp_path / "data", size=700, seed=3)
    truth = _truth(data)
    start = pd.concat([truth[truth.state == "mitotic"].head(6), truth[truth.state != "mitotic"].head(30)])
    start = start.rename(columns={"state": "label"})[["sample_id", "x", "y", "label"]]
    start.to_csv(tmp_path / "points.csv", index=False)
    labels = {"level": "cell", "source": "annotations",
              "annotations": {"path": str(tmp_path / "points.csv"), "radius": 6}}
    first = _run(tmp_path, data, "first", labels=labels)
    before = json.loads((first / "metrics.json").read_text())["labels"]
    fetched = fetch_cells(first, n=10, kind="uncertain")
    table = pd.read_csv(fetched.csv, keep_default_na=False)
    annotated = set(pd.read_parquet(first / "cells" / "labels.parquet").Metadata_cell_id)
    assert len(table) == 10 and not set(table.Metadata_cell_id) & annotated  # new cells only
    nearest = [int(np.argmin(np.hypot(truth.x - r.x, truth.y - r.y))) for r in table.itertuples()]
    table["label"] = truth.state.to_numpy()[nearest]  # the annotator fills in the label column
    blank = table.iloc[:1].assign(label="")  # a row left blank is skipped, not read as a class
    pd.concat([start, table, blank]).to_csv(tmp_path / "points.csv", index=False)
    second = _run(tmp_path, data, "second", labels=labels)
    after = json.loads((second / "metrics.json").read_text())["labels"]
    assert after["matched"] == before["matched"] + 10 and after["unlabelled_rows"] == 1
    relabelled = pd.read_parquet(second / "cells" / "labels.parquet").set_index("Metadata_cell_id")
    assert relabelled.label.reindex(table.Metadata_cell_id).tolist() == table.label.tolist()


def test_ungrouped_folds_split_the_cells_of_a_well():
    index = pd.DataFrame({"sample_id": [f"a#{i}" for i in range(12)], "label": ["m", "i", "i"] * 4,
                          "Metadata_Plate": "P1", "Metadata_Well": "B02"})
    folds = make_folds(index, FoldsConfig(n_splits=2, group_column="none"))
    assert folds.fold.nunique() == 2 and folds.group.tolist() == index.sample_id.tolist()
    kept = make_folds(index.assign(sample_id=[f"s{i}" for i in range(12)]).iloc[:6].pipe(
        lambda t: pd.concat([t, t.assign(sample_id=t.sample_id + "b", Metadata_Well="B03")])),
        FoldsConfig(n_splits=2))
    assert (kept.groupby("group").fold.nunique() == 1).all()  # without "none", a well stays whole


def test_table_classifier_counts_members_in_the_unit_each_split_divides():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(40, 3)), columns=["a", "b", "c"])
    X["Metadata_sample_id"] = np.repeat(["i1", "i2", "i3", "i4"], 10)
    y = np.array((["pos"] * 2 + ["neg"] * 8) * 4)
    X.loc[y == "pos", "a"] += 3
    # groups of one row each: the tuning folds are stratified over rows (8 positives suffice)
    model = make_classifier("svm", granularity="cell", tune=True, tune_budget=1, inner_folds=3)
    model.fit(X, y, groups=np.arange(40).astype(str))
    assert model.predict(X.iloc[:2]).tolist() == ["pos", "pos"]
    with pytest.raises(TooFewMembersError, match=r"\{'neg': 2, 'pos': 2\} lie in fewer than 3 groups"):
        model.fit(X, y, groups=np.repeat(["p1", "p2"], 20))  # grouped tuning: two plates


def test_score_of_an_image_model_or_of_nothing_fails_clearly(one_image, tmp_path, caplog):
    from cellcompare.serve.errors import InputSpecError
    from cellcompare.serve.predictor import ClassicalPredictor

    _, _, out, _ = one_image
    empty = tmp_path / "blank"
    empty.mkdir()
    (empty / "metadata.csv").write_text("")  # not a dataset: the reader's error names it
    assert main(["score", str(out / "models" / "svm"), str(empty), "--layout", "rxrx1",
                 "--out", str(tmp_path / "s")]) == 2  # bad input: its message, status 2
    assert str(empty) in caplog.text and not (tmp_path / "s").exists()
    meta = json.loads((out / "models" / "svm" / "serve.json").read_text())
    predictor = ClassicalPredictor(out / "models" / "svm", {**meta, "granularity": "image"})
    with pytest.raises(InputSpecError, match="only a cell model scores cells"):
        predictor.predict_cells([])

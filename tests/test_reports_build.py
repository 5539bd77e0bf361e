"""Tests of reports/: build a report from a small fabricated results directory and read it back."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from bs4 import BeautifulSoup
from PIL import Image
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    recall_score,
    top_k_accuracy_score,
)

from cellcompare import reports
from cellcompare.cli import main
from cellcompare.comparison.uncertainty import uncertainty
from cellcompare.config import UnknownKeyError
from cellcompare.confusion import DENSE_MAX_CLASSES
from cellcompare.datasets import synth
from cellcompare.reports import build_report, load_results

MODELS = ("svm", "xgboost", "resnet18")
SKILL = {"svm": 1.2, "xgboost": 1.8, "resnet18": 0.9}   # logit boost of the true class


def _fold_metrics(y: np.ndarray, proba: np.ndarray, classes: list[str], fold: int,
                  dense_max: int = DENSE_MAX_CLASSES) -> dict:
    pred = np.asarray(classes)[proba.argmax(axis=1)]
    labels = np.arange(len(classes))
    y_idx = np.searchsorted(classes, y)
    cm = confusion_matrix(y, pred, labels=classes)
    stored = cm.tolist() if len(classes) <= dense_max else {  # what comparison.metrics writes
        "format": "sparse", "n_classes": len(classes),
        "entries": [[int(i), int(j), int(cm[i, j])] for i, j in zip(*np.nonzero(cm))]}
    recall = recall_score(y, pred, labels=classes, average=None, zero_division=0)
    return {
        "fold": fold, "accuracy": accuracy_score(y, pred),
        "top_k_accuracy": top_k_accuracy_score(y_idx, proba, k=min(3, len(classes) - 1),
                                               labels=labels),
        "balanced_accuracy": balanced_accuracy_score(y, pred),
        "macro_f1": f1_score(y, pred, average="macro"),
        "log_loss": log_loss(y_idx, proba, labels=labels),
        "per_class_recall": dict(zip(classes, map(float, recall))),
        "confusion_matrix": stored,
        "fit_seconds": 1.5 + fold, "predict_seconds": 0.1 * (fold + 1),
        "peak_memory_mb": 200.0 + 10 * fold, "chosen_params": {"C": 1.0},
    }


def make_results_dir(root: Path, *, n_classes: int = 3, per_class: int = 4, n_folds: int = 3,
                     optional: bool = True, seed: int = 0, classes: list[str] | None = None,
                     dataset_root: Path | None = None, dense_max: int = DENSE_MAX_CLASSES) -> Path:
    """Write a results directory per docs/CONTRACTS.md with metrics computed from predictions.

    Each fold is one plate; ``optional=False`` writes only metrics.json. Confusion matrices
    are dense up to ``dense_max`` classes (as older results folders hold them), else sparse.
    """
    rng = np.random.default_rng(seed)
    classes = sorted(classes) if classes else [f"class_{i:02d}" for i in range(n_classes)]
    n_classes = len(classes)
    folds = pd.DataFrame([
        {"sample_id": f"P{f}_{c}_{k}", "label": c, "group": f"plate{f}", "fold": f}
        for f in range(n_folds) for c in classes for k in range(per_class)])
    pred_rows, models = [], {}
    for model in MODELS:
        fold_metrics = []
        for f in range(n_folds):
            part = folds[folds["fold"] == f]
            y_idx = np.searchsorted(classes, part["label"].to_numpy())
            logits = rng.normal(size=(len(part), n_classes))
            logits[np.arange(len(part)), y_idx] += SKILL[model]
            proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            fold_metrics.append({**_fold_metrics(part["label"].to_numpy(), proba, classes, f,
                                                 dense_max),
                                 "n_train": len(folds) - len(part), "n_test": len(part),
                                 **_training(model, f)})
            for sid, true, p in zip(part["sample_id"], part["label"], proba):
                pred_rows.append({"sample_id": sid, "fold": f, "model": model, "true_label": true,
                                  **{f"proba_{c}": v for c, v in zip(classes, p)}})
        frame = pd.DataFrame(fold_metrics)
        summary = {m: {"mean": float(frame[m].mean()), "std": float(frame[m].std(ddof=1))}
                   for m in ("accuracy", "top_k_accuracy", "balanced_accuracy", "macro_f1",
                             "log_loss")}
        deep = model == "resnet18"
        models[model] = {
            "kind": "deep" if deep else "classical",
            "params": {"arch": "resnet18"} if deep else {"granularity": "image"},
            "weights": {"source": "none", "path": None, "sha256": None} if deep else None,
            "folds": fold_metrics, "summary": summary}
    a = np.array([f["accuracy"] for f in models["xgboost"]["folds"]])
    b = np.array([f["accuracy"] for f in models["resnet18"]["folds"]])
    metrics = {
        "top_k": 3,
        "metric_names": ["accuracy", "top_k_accuracy", "balanced_accuracy", "macro_f1", "log_loss"],
        "classes": classes,
        "dataset": {"root": str(dataset_root or root / "no-such-dataset"), "layout": "rxrx1",
                    "n_images": len(folds), "channels": ["DNA", "ER", "Actin"],
                    "class_counts": folds["label"].value_counts().to_dict(),
                    "group_counts": folds["group"].value_counts().to_dict(),
                    "dropped_classes": ["class_zz"],
                    "skipped": [{"path": "images/P9/x.png", "reason": "truncated PNG"}]},
        "folds": {"n_splits": n_folds, "group_column": "plate", "seed": 0,
                  "holdout_fraction": 0.0},
        "environment": {"python": "3.11.9", "packages": {"numpy": "2.4.0", "torch": "2.14.0"},
                        "cpu": "Test CPU @ 2 cores", "cpu_count": 2, "gpu": None},
        "features": {"preset": "standard", "n_features": 412,
                     "cells_per_image": {"median": 31, "min": 4, "max": 77},
                     "extraction": {"images": len(folds), "seconds": 0.25 * len(folds), "jobs": 2,
                                    "seconds_per_image": 0.25}},
        "models": models,
        "comparisons": [{
            "model_a": "xgboost", "model_b": "resnet18", "metric": "accuracy",
            "differences": (a - b).tolist(), "mean_difference": float((a - b).mean()),
            "t_test": {"statistic": 2.1, "pvalue": 0.17}, "wilcoxon": {"statistic": 0.0,
                                                                      "pvalue": 0.25},
            "mcnemar": {"statistic": 1.3, "pvalue": 0.26, "b": 7, "c": 3}, "cohens_dz": 1.2,
            "verdict": "No evidence that xgboost and resnet18 differ in accuracy."}],
    }
    metrics.update(uncertainty(models, metrics["comparisons"], pd.DataFrame(pred_rows), classes,
                               metrics["top_k"], seed=seed, n_boot=500))
    root.mkdir(parents=True, exist_ok=True)
    (root / "metrics.json").write_text(json.dumps(metrics))
    if not optional:
        return root
    folds.to_csv(root / "folds.csv", index=False)
    pd.DataFrame(pred_rows).to_parquet(root / "predictions.parquet")
    (root / "config.yaml").write_text(yaml.safe_dump({"models": list(MODELS), "seed": 0}))
    (root / "dataset_summary.json").write_text(json.dumps(
        {"n_images": len(folds), "image_sizes": {"64x64": len(folds) - 1, "64x80": 1},
         "dtypes": {"uint8": len(folds)}}))
    (root / "class_differences.json").write_text(json.dumps(
        {c: {"description": f"nuclei {i * 20}% larger", "params": {"nucleus_scale": 1 + 0.2 * i}}
         for i, c in enumerate(classes)}))
    families = ["AreaShape", "Intensity", "Texture"]
    (pd.DataFrame([{"model": m, "fold": f, "feature": f"Nuclei_{fam}_F{j}", "family": fam,
                    "gain": float(30 - j + rng.random()) if m == "xgboost" else np.nan,
                    "permutation": float(0.3 - 0.01 * j)}
                   for m in ("svm", "xgboost") for f in range(n_folds)
                   for j, fam in enumerate(families * 9)])
     .to_csv(root / "feature_importance.csv", index=False))
    qc = root / "features" / "qc"
    qc.mkdir(parents=True)
    cells, nuclei = np.zeros((64, 64), np.int32), np.zeros((64, 64), np.int32)
    cells[10:30, 10:30], cells[35:60, 30:55] = 1, 2
    nuclei[15:25, 15:25], nuclei[42:52, 38:48] = 1, 2
    np.savez(qc / f"{folds['sample_id'][0]}.npz", nuclei=nuclei, cells=cells)
    _write_explain(root / "explain", folds, classes, rng)
    return root


def _training(model: str, fold: int) -> dict:
    """Per-epoch history (deep) and tuning trials (svm), as comparison.explain records them."""
    if model == "resnet18":
        return {"history": [{"epoch": e, "lr": 0.01, "train_loss": 2.0 / e, "train_accuracy": 0.2 * e,
                             "val_loss": 2.2 / e + 0.05 * fold, "val_accuracy": 0.18 * e,
                             "images_per_s": 30.0} for e in range(1, 5)],
                "tuning_trials": []}
    if model == "svm":
        return {"history": [], "tuning_trials": [
            {"params": {"C": c}, "mean_log_loss": 1.0 / c + fold, "seconds": 0.1} for c in (1, 10)]}
    return {"history": [], "tuning_trials": []}


def _write_explain(folder: Path, folds: pd.DataFrame, classes: list[str], rng) -> None:
    """Grad-CAM examples of resnet18 (fold 0) and example cells of xgboost's top features."""
    folder.mkdir(parents=True)
    part = folds[folds["fold"] == 0]
    n = len(part)
    predicted = np.where(np.arange(n) % 3 == 0, np.roll(part["label"].to_numpy(), 1),
                         part["label"].to_numpy())
    yy, xx = np.mgrid[:32, :32]
    cams = np.stack([np.exp(-((yy - 8 - i % 16) ** 2 + (xx - 16) ** 2) / 40.0) for i in range(n)])
    np.savez(folder / "resnet18__fold0.gradcam.npz",
             images=rng.integers(0, 255, (n, 3, 32, 32), dtype=np.uint8),
             cams=(cams * 255).astype(np.uint8), sample_id=part["sample_id"].to_numpy(str),
             true_label=part["label"].to_numpy(str), predicted=predicted.astype(str),
             confidence=rng.uniform(0.4, 1.0, n).astype(np.float32),
             channels=np.asarray(["DNA", "ER", "Actin"]))
    features = np.repeat(["Nuclei_AreaShape_F0", "Nuclei_Intensity_F1"], 4)
    np.savez(folder / "xgboost.features.npz",
             crops=rng.integers(0, 255, (8, 3, 24, 24), dtype=np.uint8), feature=features,
             end=np.tile(["low", "low", "high", "high"], 2), value=np.arange(8, dtype=float),
             sample_id=folds["sample_id"].to_numpy(str)[:8], label=folds["label"].to_numpy(str)[:8],
             channels=np.asarray(["DNA", "ER", "Actin"]))


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    return make_results_dir(tmp_path / "results")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, BeautifulSoup]:
    root = make_results_dir(tmp_path_factory.mktemp("built") / "results")
    report = build_report(root)
    return root, BeautifulSoup(report.read_text(encoding="utf-8"), "html.parser")


def test_results_table_equals_metrics_json(built):
    root, soup = built
    metrics = json.loads((root / "metrics.json").read_text())
    rows = soup.select("#results-table tbody tr")
    assert [r["data-model"] for r in rows] == list(MODELS)
    for row in rows:
        summary = metrics["models"][row["data-model"]]["summary"]
        for cell in row.select("td[data-metric]"):
            stats = summary[cell["data-metric"]]
            assert cell.get_text(strip=True) == f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def test_best_per_column_highlighted_lower_loss_wins(built):
    root, soup = built
    metrics = json.loads((root / "metrics.json").read_text())
    for metric in ("accuracy", "log_loss"):
        means = {m: round(metrics["models"][m]["summary"][metric]["mean"], 3) for m in MODELS}
        pick = min if metric == "log_loss" else max
        best = {m for m, v in means.items() if v == pick(means.values())}
        marked = {c.find_parent("tr")["data-model"]
                  for c in soup.select(f'#results-table td.best[data-metric="{metric}"]')}
        assert marked == best


def test_report_has_no_external_resources(built):
    _, soup = built
    html = str(soup)
    for tag in soup.find_all(src=True) + soup.find_all(href=True):
        value = tag.get("src") or tag.get("href")
        assert value.startswith(("data:", "#")), value
    assert not re.search(r"https?://", html)
    assert soup.find("link") is None and soup.find("script", src=True) is None
    assert len(soup.find_all("img")) >= 6
    assert all(img["src"].startswith("data:image/png;base64,") for img in soup.find_all("img"))


#: Figures each section of the ``built`` report must embed, in order. The dataset folder is not
#: reachable (no montage) and no per-image feature table exists (no cells-per-image plot); svm
#: has no gain column, so it gets only the permutation ranking.
EXPECTED_FIGURES = {
    "dataset": ["Class and group counts"],
    "methods": ["Segmentation QC"],
    "results": ["Scores per fold", *(f"Confusion matrix: {m}" for m in MODELS),
                "Recall per class", "Time and memory"],
    "interpretation": ["Where resnet18 looks", "What xgboost's top features measure",
                       "Top features: svm", "Top features: xgboost", "Top features: xgboost"],
    "training": ["Training curves: resnet18"],
}


def _png(img) -> Image.Image:
    """Decode an ``<img>`` whose src is a PNG data URI."""
    prefix = "data:image/png;base64,"
    assert img["src"].startswith(prefix), img["src"][:40]
    data = base64.b64decode(img["src"][len(prefix):], validate=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("section", list(EXPECTED_FIGURES))
def test_sections_embed_their_figures_as_png(built, section):
    _, soup = built
    figures = soup.select(f"section#{section} figure")
    assert [f.img["alt"] for f in figures] == EXPECTED_FIGURES[section]
    for figure in figures:
        image = _png(figure.img)
        assert image.format == "PNG" and image.width > 100 and image.height > 100
        darkest, brightest = image.convert("L").getextrema()
        assert brightest > darkest, f"{figure.img['alt']} is a blank image"
        caption = figure.figcaption.get_text(" ", strip=True)
        assert caption.startswith(f"{figure.img['alt']}.") and len(caption) > 40 + len(figure.img["alt"])


def test_no_image_outside_a_figure(built):
    _, soup = built
    assert len(soup.find_all("img")) == sum(map(len, EXPECTED_FIGURES.values()))
    assert all(img.find_parent("figure") is not None for img in soup.find_all("img"))


def test_sections_state_weights_tests_and_truth(built):
    root, soup = built
    caveat = soup.select_one('#caveats li[data-key="weights.resnet18"]').get_text(" ", strip=True)
    assert "resnet18" in caveat and "none: trained from random initialisation" in caveat
    tests = soup.select_one("#tests-table").get_text(" ", strip=True)
    assert "No evidence that xgboost and resnet18 differ" in tests and "0.17" in tests
    truth = soup.select_one("#truth-table").get_text(" ", strip=True)
    assert "nuclei 40% larger" in truth
    text = soup.get_text(" ", strip=True)
    assert "truncated PNG" in text and "class_zz" in text
    assert "64x64 (35 images); 64x80 (1 image)" in text and "uint8 (36 images)" in text
    problem = soup.select_one("section#dataset p.missing").get_text(" ", strip=True)
    assert problem == (f"The dataset folder {root / 'no-such-dataset'} is not reachable from here, "
                       "so no images are shown.")


def test_summary_files_written(built):
    root, _ = built
    summary = pd.read_csv(root / "summary.csv", index_col="model")
    metrics = json.loads((root / "metrics.json").read_text())
    assert summary.loc["xgboost", "macro_f1_mean"] == pytest.approx(
        metrics["models"]["xgboost"]["summary"]["macro_f1"]["mean"])
    markdown = (root / "summary.md").read_text().splitlines()
    assert markdown[0].startswith("| model | accuracy | top-3 accuracy")
    assert len(markdown) == 2 + len(MODELS) and "**" in markdown[2] + markdown[3] + markdown[4]


def test_existing_summary_csv_is_kept(results_dir):
    (results_dir / "summary.csv").write_text("model,accuracy_mean\nsvm,0.5\n")
    build_report(results_dir)
    assert (results_dir / "summary.csv").read_text() == "model,accuracy_mean\nsvm,0.5\n"


def test_missing_optional_files_are_stated(tmp_path):
    root = make_results_dir(tmp_path / "bare", optional=False)
    soup = BeautifulSoup(build_report(root).read_text(), "html.parser")
    missing = " ".join(p.get_text(" ", strip=True) for p in soup.select(".missing"))
    for phrase in ("config.yaml is absent", "folds.csv is absent",
                   "feature_importance.csv is absent", "dataset_summary.json is absent",
                   "No segmentation QC files"):
        assert phrase in missing
    assert len(soup.select("#results-table tbody tr")) == len(MODELS)


def test_many_classes_lists_top_confusions(tmp_path):
    root = make_results_dir(tmp_path / "many", n_classes=40, per_class=1, optional=False)
    soup = BeautifulSoup(build_report(root).read_text(), "html.parser")
    assert not any("Confusion matrix" in (img.get("alt") or "") for img in soup.find_all("img"))
    blocks = soup.select(".top-confusions")
    assert [b["data-model"] for b in blocks] == list(MODELS)
    metrics = json.loads((root / "metrics.json").read_text())
    cm = np.sum([f["confusion_matrix"] for f in metrics["models"]["svm"]["folds"]], axis=0)
    frac = cm / cm.sum(axis=1, keepdims=True)
    np.fill_diagonal(frac, 0)
    first = blocks[0].select("tbody tr")[0].find_all("td")
    i, j = np.unravel_index(frac.argmax(), frac.shape)
    assert float(first[2].get_text()) == pytest.approx(frac.max(), abs=5e-4)
    assert frac[metrics["classes"].index(first[0].get_text()),
                metrics["classes"].index(first[1].get_text())] == pytest.approx(frac[i, j])
    assert soup.find("details") is not None   # the 40-row recall table is collapsed


class _FakeDataset:
    channel_names = ("DNA", "ER", "Actin")

    def __init__(self, ids, labels):
        self.ids, self.labels = np.asarray(ids), np.asarray(labels)

    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        image = rng.integers(0, 255, size=(3, 64, 64), dtype=np.uint8)
        return type("S", (), {"image": image, "float_image": image / np.float32(255)})()

    def get(self, sample_id):
        return self[int(np.flatnonzero(self.ids == sample_id)[0])]


def test_montage_and_overlay_use_dataset_pixels(results_dir, monkeypatch):
    folds = pd.read_csv(results_dir / "folds.csv")
    fake = _FakeDataset(folds["sample_id"], folds["label"])
    monkeypatch.setattr(reports.images, "open_images", lambda root: (fake, None))
    soup = BeautifulSoup(build_report(results_dir).read_text(), "html.parser")
    alts = [img["alt"] for img in soup.find_all("img")]
    assert "Sample images" in alts and "Segmentation QC" in alts
    caption = soup.find("img", alt="Segmentation QC").find_next("figcaption").get_text()
    assert "outlines on black" not in caption


def test_cli_build_prints_path(results_dir, capsys):
    assert main(["report", str(results_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(results_dir / "report.html")


def test_cli_reports_missing_metrics(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no metrics.json" in capsys.readouterr().err


def test_sparse_and_old_dense_matrices_give_the_same_top_confusions(tmp_path):
    classes = [f"siRNA-{i:03d}" for i in range(DENSE_MAX_CLASSES + 5)]
    tops = []
    for dense_max in (DENSE_MAX_CLASSES, len(classes)):  # sparse as written now, dense as before
        root = make_results_dir(tmp_path / str(dense_max), classes=classes, per_class=2,
                                optional=False, dense_max=dense_max)
        stored = json.loads((root / "metrics.json").read_text())["models"]["svm"]["folds"][0]
        assert isinstance(stored["confusion_matrix"], dict) == (dense_max < len(classes))
        soup = BeautifulSoup(build_report(root).read_text(), "html.parser")
        tops.append([[td.get_text() for td in tr.find_all("td")]
                     for block in soup.select(".top-confusions") for tr in block.select("tbody tr")])
    assert tops[0] == tops[1] and len(tops[0]) == 20 * len(MODELS)


def test_load_rejects_wrong_confusion_shape(results_dir):
    metrics = json.loads((results_dir / "metrics.json").read_text())
    metrics["models"]["svm"]["folds"][0]["confusion_matrix"] = [[1, 0], [0, 1]]
    (results_dir / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(reports.ResultsError, match=r"confusion_matrix has shape \(2, 2\)"):
        load_results(results_dir)


def test_report_on_synthetic_cellpainting_dataset(tmp_path):
    data = synth.make_cellpainting(tmp_path / "data", classes=3, per_class=2, size=96, plates=2)
    from cellcompare.datasets import open_dataset

    ds = open_dataset(data)
    root = make_results_dir(tmp_path / "results", classes=list(ds.classes), dataset_root=data,
                            per_class=1, optional=False)
    (root / "class_differences.json").write_bytes((data / "class_differences.json").read_bytes())
    qc = root / "features" / "qc"
    qc.mkdir(parents=True)
    sid = str(ds.ids[0])
    np.savez(qc / f"{sid}.npz",
             **{k: np.asarray(Image.open(data / "truth" / f"{sid}_{k}.png")) for k in
                ("nuclei", "cells")})
    soup = BeautifulSoup(build_report(root).read_text(), "html.parser")
    montage = soup.find("img", alt="Sample images").find_next("figcaption").get_text()
    assert "DNA = blue" in montage and "Golgi = yellow" in montage
    overlay = soup.find("img", alt="Segmentation QC").find_next("figcaption").get_text()
    assert "outlines on black" not in overlay
    truth = soup.select_one("#truth-table").get_text(" ", strip=True)
    assert all(c in truth for c in ds.classes) and "nuclear_area=" in truth


def test_options_switch_to_top_confusions_and_reject_unknown_keys(results_dir):
    options = reports.ReportOptions.from_dict({"heatmap_max_classes": 2, "top_confusions": 3})
    soup = BeautifulSoup(build_report(results_dir, options=options).read_text(), "html.parser")
    assert all(len(b.select("tbody tr")) <= 3 for b in soup.select(".top-confusions"))
    assert len(soup.select(".top-confusions")) == len(MODELS)
    with pytest.raises(UnknownKeyError, match="'report.heatmap_classes'"):
        reports.ReportOptions.from_dict({"heatmap_classes": 2})


def _with_wells(root: Path, sites_per_well: int) -> dict:
    metrics = json.loads((root / "metrics.json").read_text())
    summaries = {m: {k: {"mean": 0.5 + 0.1 * i + 0.01 * j, "std": 0.02 * (j + 1)}
                     for j, k in enumerate(["accuracy", "top_k_accuracy", "balanced_accuracy",
                                            "macro_f1", "log_loss"])}
                 for i, m in enumerate(MODELS)}
    metrics["wells"] = {"available": True, "n_wells": 6, "wells_split_across_folds": 0,
                        "sites_per_well": {"median": sites_per_well, "min": 1, "max": sites_per_well},
                        "aggregation": "mean of the sites' class probabilities",
                        "models": {m: {"folds": [], "summary": s} for m, s in summaries.items()}}
    (root / "metrics.json").write_text(json.dumps(metrics))
    return summaries


def test_well_table_equals_metrics_json_when_wells_hold_several_sites(tmp_path):
    root = make_results_dir(tmp_path / "wells", optional=False)
    summaries = _with_wells(root, sites_per_well=2)
    soup = BeautifulSoup(build_report(root).read_text(), "html.parser")
    rows = soup.select("#wells-table tbody tr")
    assert [r.find("td").get_text(strip=True) for r in rows] == list(MODELS)
    metric_names = json.loads((root / "metrics.json").read_text())["metric_names"]
    for row in rows:
        cells = [td.get_text(strip=True) for td in row.find_all("td")[1:]]
        summary = summaries[row.find("td").get_text(strip=True)]
        assert cells == [f"{summary[k]['mean']:.3f} ± {summary[k]['std']:.3f}" for k in metric_names]


def test_no_well_table_when_each_well_has_one_site(tmp_path):
    root = make_results_dir(tmp_path / "single", optional=False)
    _with_wells(root, sites_per_well=1)
    soup = BeautifulSoup(build_report(root).read_text(), "html.parser")
    assert soup.select("#wells-table") == []

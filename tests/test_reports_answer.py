"""The report's first box, uncertainty tables, explanations and the terminal table equal metrics.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bs4 import BeautifulSoup
from test_reports_build import MODELS, make_results_dir

from cellcompare.reports import build_report, load_results
from cellcompare.reports.attribution import read_examples
from cellcompare.reports.load import ResultsError
from cellcompare.reports.tables import terminal_table


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[dict, BeautifulSoup]:
    root = make_results_dir(tmp_path_factory.mktemp("answer") / "results")
    soup = BeautifulSoup(build_report(root).read_text(encoding="utf-8"), "html.parser")
    return json.loads((root / "metrics.json").read_text()), soup


def _value(soup, selector: str, key: str) -> float:
    span = soup.select_one(f'{selector} [data-key="{key}"]')
    assert span is not None, key
    return float(span.get_text())


def test_the_answer_comes_first(built):
    _, soup = built
    sections = [s["id"] for s in soup.select("main > section")]
    assert sections[0] == "answer"
    assert sections.index("answer") < sections.index("dataset") < sections.index("results")


def test_first_box_numbers_equal_metrics_json(built):
    metrics, soup = built
    h = metrics["headline"]
    assert (h["model_a"]["model"], h["model_b"]["model"]) == ("xgboost", "resnet18")
    assert soup.select_one("#answer-sentence").get_text(strip=True) == h["sentence"]
    for side in ("model_a", "model_b"):
        for key in ("estimate", "low", "high", "fold_mean", "fold_std"):
            assert _value(soup, "#answer-table", f"{side}.{key}") == pytest.approx(
                h[side][key], abs=5e-4), (side, key)
    for key in ("estimate", "low", "high"):
        assert _value(soup, "#answer-table", f"difference.{key}") == pytest.approx(
            h["difference"][key], abs=5e-4)
    assert _value(soup, "#answer-table", "t_test_p") == pytest.approx(
        metrics["comparisons"][0]["t_test"]["pvalue"], rel=1e-2)
    assert _value(soup, "#answer-table", "mcnemar_p") == pytest.approx(
        metrics["comparisons"][0]["mcnemar"]["pvalue"], rel=1e-2)
    assert h["model_a"]["fold_mean"] == metrics["models"]["xgboost"]["summary"]["accuracy"]["mean"]


def test_first_box_states_the_caveats(built):
    metrics, soup = built
    caveats = {li["data-key"]: li.get_text(" ", strip=True) for li in soup.select("#caveats li")}
    assert "none: trained from random initialisation" in caveats["weights.resnet18"]
    assert caveats["folds"].startswith(f"{metrics['folds']['n_splits']} cross-validation folds, grouped by plate")
    assert caveats["images_per_class"] == "3 classes, 12 images per class"
    assert caveats["imbalance"] == "classes are balanced (largest / smallest = 1.0)"


def test_first_box_cost_per_image_equals_metrics_json(built):
    metrics, soup = built
    for model in ("xgboost", "resnet18"):
        folds = metrics["models"][model]["folds"]
        row = f'#cost-per-image tr[data-model="{model}"]'
        train = np.mean([f["fit_seconds"] / f["n_train"] for f in folds])
        predict = np.mean([f["predict_seconds"] / f["n_test"] for f in folds])
        assert _value(soup, row, "train") == pytest.approx(train, rel=1e-2)
        assert _value(soup, row, "predict") == pytest.approx(predict, rel=1e-2)
        extract = metrics["features"]["extraction"]["seconds_per_image"] if model == "xgboost" else 0.0
        assert _value(soup, row, "new_image") == pytest.approx(extract + predict, rel=1e-2)
    assert _value(soup, '#cost-per-image tr[data-model="xgboost"]', "extract") == 0.25
    hardware = soup.select_one("#hardware").get_text(" ", strip=True)
    assert "2 CPU cores (Test CPU @ 2 cores), no GPU" in hardware


def test_bootstrap_table_and_compact_matrix(built):
    metrics, soup = built
    rows = {tr.find_all("td")[0].get_text(): [td.get_text() for td in tr.find_all("td")[1:]]
            for tr in soup.select("#bootstrap-table tbody tr")}
    assert list(rows) == list(MODELS)
    svm = metrics["bootstrap"]["models"]["svm"]["accuracy"]
    assert rows["svm"][0] == f"{svm['estimate']:.3f} [{svm['low']:.3f}, {svm['high']:.3f}]"
    matrix = soup.select("#pairwise-matrix tbody tr")
    assert [tr.find_all("td")[0].get_text() for tr in matrix] == list(MODELS)
    cells = [[td.get_text() for td in tr.find_all("td")[1:]] for tr in matrix]
    assert [cells[i][i] for i in range(3)] == ["-", "-", "-"]
    diff = metrics["comparisons"][0]["mean_difference"]           # xgboost - resnet18
    assert cells[1][2].startswith(f"{diff:+.3f} · t p=0.17 · McN p=0.26")
    assert cells[2][1].startswith(f"{-diff:+.3f}")
    assert cells[0][1] == "n/a"                                    # svm vs xgboost not tested
    # the full table of tests is collapsed under the matrix
    assert soup.select_one("details#all-tests #tests-table") is not None


def test_training_curves_and_tuning_trials(built):
    _, soup = built
    assert [h.get_text() for h in soup.select("section#training h3")] == ["svm", "resnet18"]
    trials = soup.select("section#training table")
    assert trials and "mean_log_loss" in trials[0].get_text()
    assert len(trials[0].select("tbody tr")) == 2 * 3           # 2 trials x 3 folds


def test_report_without_headline_or_explanations_says_so(tmp_path):
    root = make_results_dir(tmp_path / "old", optional=False)
    metrics = json.loads((root / "metrics.json").read_text())
    for key in ("headline", "bootstrap", "pairwise"):
        metrics.pop(key)
    (root / "metrics.json").write_text(json.dumps(metrics))
    soup = BeautifulSoup(build_report(root).read_text(), "html.parser")
    missing = " ".join(p.get_text(" ", strip=True) for p in soup.select(".missing"))
    assert "metrics.json has no headline" in missing
    assert "metrics.json has no bootstrap intervals" in missing
    assert "No explanation files in explain/" in missing
    assert soup.select("#caveats li")                            # caveats still come from metrics.json


def test_broken_explain_file_names_the_file(tmp_path):
    path = tmp_path / "m__fold0.gradcam.npz"
    np.savez(path, images=np.zeros((2, 1, 4, 4), np.uint8))
    with pytest.raises(ResultsError, match=r"m__fold0\.gradcam\.npz: missing arrays \['cams'"):
        read_examples(path, ("images", "cams"))


def test_terminal_table_lists_every_model(built, tmp_path):
    root = make_results_dir(tmp_path / "term", optional=False)
    metrics = json.loads((root / "metrics.json").read_text())
    lines = terminal_table(load_results(root)).splitlines()
    assert lines[0].split() == ["model", "accuracy", "top-3", "accuracy", "balanced", "accuracy",
                                "time", "(s/fold)"]
    assert [line.split()[0] for line in lines[2:]] == list(MODELS)
    svm = metrics["models"]["svm"]["summary"]["accuracy"]
    assert f"{svm['mean']:.3f} ± {svm['std']:.3f}" in lines[2]
    seconds = np.mean([f["fit_seconds"] + f["predict_seconds"] for f in metrics["models"]["svm"]["folds"]])
    assert lines[2].split()[-1] == f"{seconds:.1f}"


def test_pdf_without_a_browser_or_report_is_a_clear_error(tmp_path):
    from cellcompare.reports.pdf import PdfError, print_pdf

    html = tmp_path / "report.html"
    with pytest.raises(PdfError, match="no such report to print"):
        print_pdf(html)
    html.write_text("<html></html>")
    with pytest.raises(PdfError, match="no headless browser found"):
        print_pdf(html, browser=str(tmp_path / "no-browser"))


@pytest.mark.parametrize("metric,expected", [
    ("accuracy", "accuracy favours the large classes"),
    ("balanced_accuracy", "the answer uses balanced accuracy")])
def test_imbalance_caveat_follows_the_headline_metric(tmp_path, metric, expected):
    from cellcompare.reports.verdict import caveats

    root = make_results_dir(tmp_path / "imbalanced", optional=False)
    metrics = json.loads((root / "metrics.json").read_text())
    metrics["dataset"]["class_counts"] = {"a": 40, "b": 10, "c": 20}
    metrics["headline"]["metric"] = metric
    (root / "metrics.json").write_text(json.dumps(metrics))
    found = {c["key"]: c for c in caveats(load_results(root))}
    assert found["imbalance"]["warn"] and expected in found["imbalance"]["text"]
    assert "(largest / smallest = 4.0)" in found["imbalance"]["text"]
    assert found["images_per_class"]["text"] == "3 classes, 10 to 40 images per class"

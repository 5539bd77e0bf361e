"""The report speaks of what the run classified: cells for a cell task, images for an image task."""

from __future__ import annotations

import json
import logging

import pytest
from bs4 import BeautifulSoup
from test_reports_build import make_results_dir

from cellcompare.comparison import load_config, run
from cellcompare.comparison.adapters import ModelAdapter
from cellcompare.comparison import register_model, unregister_model
from cellcompare.reports import load_results
from cellcompare.reports.tables import terminal_table
from cellcompare.reports.verdict import caveats


def _caveats(root, **metrics_changes):
    path = root / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics.update(metrics_changes)
    path.write_text(json.dumps(metrics))
    return {c["key"]: c for c in caveats(load_results(root))}


def test_image_task_caveats_count_images(tmp_path):
    root = make_results_dir(tmp_path / "images", optional=False)
    found = _caveats(root, task={"level": "image", "unit_name": "images", "n_units": 36,
                                 "class_counts": {"class_00": 12, "class_01": 12, "class_02": 12}})
    assert found["images_per_class"]["text"] == "3 classes, 12 images per class"
    assert found["imbalance"]["text"] == "classes are balanced (largest / smallest = 1.0)"


def test_cell_task_caveats_count_cells_not_images(tmp_path):
    """configs/cells_gate.yaml: 9 images per siRNA class, but 76 mitotic vs 821 interphase cells."""
    root = make_results_dir(tmp_path / "cells", optional=False)
    found = _caveats(root, dataset={"class_counts": {"siRNA_0001": 9, "siRNA_0002": 9}},
                     task={"level": "cell", "unit_name": "cells", "n_units": 937,
                           "class_counts": {"interphase": 821, "mitotic": 76, "prophase": 40}})
    assert "images_per_class" not in found
    assert found["cells_per_class"]["text"] == "3 classes, 40 to 821 cells per class"
    assert found["imbalance"]["warn"]
    assert "(largest / smallest = 20.5)" in found["imbalance"]["text"]


def test_terminal_table_leads_with_the_primary_metric_as_summary_md(tmp_path):
    root = make_results_dir(tmp_path / "imbalanced", optional=False)
    metrics = json.loads((root / "metrics.json").read_text())
    metrics["metric_names"] = ["balanced_accuracy", "accuracy", "top_k_accuracy", "macro_f1",
                               "log_loss"]
    (root / "metrics.json").write_text(json.dumps(metrics))
    lines = terminal_table(load_results(root)).splitlines()
    assert lines[0].split() == ["model", "balanced", "accuracy", "accuracy", "top-3", "accuracy",
                                "time", "(s/fold)"]
    svm = metrics["models"]["svm"]["summary"]["balanced_accuracy"]
    assert lines[2].split()[1:4] == [f"{svm['mean']:.3f}", "±", f"{svm['std']:.3f}"]


class PriorModel(ModelAdapter):
    """A classical cell model predicting the training class frequencies."""

    kind = "classical"

    def fit(self, train):
        self.prior_ = [float((train.y == c).mean()) for c in train.classes]
        return self

    def predict_proba(self, test):
        import numpy as np

        return np.tile(self.prior_, (len(test), 1))


@pytest.fixture
def prior_model():
    register_model("prior", PriorModel)
    yield
    unregister_model("prior")


def test_a_cell_task_run_logs_and_reports_its_cells(tmp_path, prior_model, caplog):
    channels = ["DNA", "ER", "Actin", "RNA", "Mito", "Golgi", "Marker"]
    config = {"dataset": {"path": str(tmp_path / "data"), "layout": "rxrx1",
                          "options": {"channel_names": channels},
                          "synth": {"classes": 2, "per_class": 3, "size": 96, "plates": 3,
                                    "mitotic_fraction": 0.2}},
              "features": {"preset": "minimal", "dna_channel": "DNA", "cyto_channel": "Actin"},
              "labels": {"level": "cell", "source": "gate",
                         "gate": {"feature": "Nuclei_Intensity_MeanIntensity_Marker",
                                  "above": "mitotic", "below": "interphase"}},
              "models": [{"name": "prior", "granularity": "cell"}],
              "folds": {"n_splits": 2}, "top_k": 1, "output": str(tmp_path / "out")}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config))
    caplog.set_level(logging.INFO, logger="cellcompare")
    out = run(load_config(path))
    metrics = json.loads((out / "metrics.json").read_text())
    cells = metrics["labels"]["class_counts"]
    assert metrics["task"] == {"level": "cell", "unit_name": "cells", "class_counts": cells,
                               "n_units": sum(cells.values())}
    assert f"{sum(cells.values())} cells in 2 folds" in caplog.text
    assert metrics["dataset"]["n_images"] == 6 and sum(cells.values()) > 6
    soup = BeautifulSoup((out / "report.html").read_text(encoding="utf-8"), "html.parser")
    shown = {li["data-key"]: li.get_text(" ", strip=True) for li in soup.select("#caveats li")}
    low, high = min(cells.values()), max(cells.values())
    assert shown["cells_per_class"] == f"2 classes, {low} to {high} cells per class"
    assert "images_per_class" not in shown
    assert "montage failed" not in caplog.text and not soup.select("#dataset p.missing")
    montage = soup.select_one('#dataset img[alt="Sample images"]')  # the images' own labels
    assert montage is not None and montage["src"].startswith("data:image/png;base64,")

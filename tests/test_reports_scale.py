"""The report at RxRx1's 1,139 classes: no axis with 1,139 ticks, a bounded file, quick to build
(work linear in the classes: no figure draws a mark, pixel or label per pair of classes)."""

from __future__ import annotations

import json

import pytest
from bs4 import BeautifulSoup
from test_reports_build import MODELS, make_results_dir

from cellcompare.atomic import write_json
from cellcompare.confusion import confusion_counts
from cellcompare.datasets import open_dataset, synth
from cellcompare.reports import attribution, build_report, cells, figures, images

#: Most tick labels one axis of any report figure may carry.
MAX_TICKS = 40
#: Most bytes of report.html at 1,139 classes.
MAX_BYTES = 6 * 2**20
#: Most figures one report may render, whatever the number of classes (45 at 1,139 classes).
MAX_FIGURES = 64
#: Most marks (bars, line points, scatter points) of one figure per class: a few per class and
#: model, never one per pair of classes (a 1,139² matrix drawn as marks is 1.3 M).
MAX_MARKS_PER_CLASS = 4
#: Most pixels of the images of one figure (sample thumbnails; a 1,139² heatmap is 1.3 M).
MAX_FIGURE_PIXELS = 2**16
#: Most bytes of metrics.json as the runner writes it at 1,139 classes, 3 models x 2 folds of
#: 1,139 test images. With dense 1,139² matrices it was 132.8 MB (23.5 MB as compact JSON);
#: measured 0.45 MB with the sparse form, 0.25 MB of it not confusion counts.
MAX_METRICS_BYTES = 2**20
#: Most bytes of stored confusion counts per test image: at most one entry per test image, a
#: line of 14 spaces of indent + ``[1138, 1138, 1139],`` + newline = 34 bytes (measured 29).
CONFUSION_BYTES_PER_ROW = 34


@pytest.fixture(scope="module")
def rxrx1_sized(tmp_path_factory):
    """A tiny-image synthetic set with 1,139 classes (class folders: the RxRx1-layout generator
    fits 308 wells on a plate) and results on it."""
    tmp = tmp_path_factory.mktemp("rxrx1_sized")
    data = synth.make_stages(tmp / "data", classes=1139, per_class=2, size=(32, 32))
    ds = open_dataset(data)
    root = make_results_dir(tmp / "results", classes=list(ds.classes), dataset_root=data,
                            per_class=1, n_folds=2, optional=False)
    return ds, root


def test_report_at_1139_classes_is_readable_and_bounded(rxrx1_sized, monkeypatch):
    ds, root = rxrx1_sized
    assert len(ds.classes) == 1139
    ticks: list[tuple[str, int]] = []      # (axis, tick labels)
    texts: list[tuple[str, int]] = []      # (axis, annotations)
    drawn: list[tuple[str, int, int]] = []  # (figure, marks, image pixels)
    for module in (figures, attribution, cells, images):
        original = module.figure_to_data_uri

        def counting(fig, *args, _original=original, **kwargs):
            marks = pixels = 0
            for ax in fig.axes:
                name = ax.get_title() or fig.get_label()
                labelled = [t for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
                ticks.append((name, len(labelled)))
                texts.append((name, len(ax.texts)))
                marks += (len(ax.patches) + sum(len(line.get_xdata()) for line in ax.lines)
                          + sum(len(c.get_offsets()) for c in ax.collections))
                pixels += sum(image.get_array().size for image in ax.get_images())
            drawn.append((fig.axes[0].get_title() if fig.axes else fig.get_label(), marks, pixels))
            return _original(fig, *args, **kwargs)

        monkeypatch.setattr(module, "figure_to_data_uri", counting)
    path = build_report(root)
    assert ticks and max(n for _, n in ticks) <= MAX_TICKS, sorted(ticks, key=lambda t: -t[1])[:3]
    assert path.stat().st_size < MAX_BYTES
    # quick to build: a bounded number of figures, each drawing marks linear in the classes, no
    # per-cell annotations and no class x class image (what made it slow: 1,139² of any of them)
    assert 0 < len(drawn) <= MAX_FIGURES, len(drawn)
    assert max(m for _, m, _ in drawn) <= MAX_MARKS_PER_CLASS * len(ds.classes), \
        sorted(drawn, key=lambda d: -d[1])[:3]
    assert max(p for _, _, p in drawn) <= MAX_FIGURE_PIXELS, sorted(drawn, key=lambda d: -d[2])[:3]
    assert max(n for _, n in texts) <= MAX_TICKS, sorted(texts, key=lambda t: -t[1])[:3]
    soup = BeautifulSoup(path.read_text(), "html.parser")
    assert [b["data-model"] for b in soup.select(".top-confusions")] == list(MODELS)
    assert all(len(b.select("tbody tr")) <= 20 for b in soup.select(".top-confusions"))
    assert not any("Confusion matrix" in (img.get("alt") or "") for img in soup.find_all("img"))
    hardest = soup.find("h4", string=lambda s: s and "hardest classes" in s)
    assert hardest is not None and "20 hardest" in hardest.get_text()
    collapsed = [d for d in soup.find_all("details") if "Recall of every class" in d.get_text()]
    assert collapsed and "(1139 rows)" in collapsed[0].summary.get_text()


def test_metrics_json_grows_with_test_rows_not_classes(rxrx1_sized, tmp_path):
    _, root = rxrx1_sized
    metrics = json.loads((root / "metrics.json").read_text())
    path = write_json(tmp_path / "metrics.json", metrics)  # indented, as the runner writes it
    assert json.loads(path.read_text()) == metrics
    assert path.stat().st_size < MAX_METRICS_BYTES, path.stat().st_size
    n, n_rows = len(metrics["classes"]), 0
    for model, info in metrics["models"].items():
        for fold in info["folds"]:
            stored = fold["confusion_matrix"]
            assert stored["format"] == "sparse" and len(stored["entries"]) <= fold["n_test"]
            counts = confusion_counts(stored, n)
            assert counts.sum() == fold["n_test"]
            assert counts.trace() / fold["n_test"] == pytest.approx(fold["accuracy"]), model
            n_rows += fold["n_test"]
            fold["confusion_matrix"] = None
    without = write_json(tmp_path / "without.json", metrics).stat().st_size
    assert path.stat().st_size - without <= CONFUSION_BYTES_PER_ROW * n_rows

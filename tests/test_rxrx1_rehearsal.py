"""benchmarks/rxrx1_rehearsal.py at a tiny size: the set, the stages, the projection and its laws."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import rxrx1_rehearsal as rehearsal  # noqa: E402

LINE = re.compile(r"^projection: 125510 sites, 1139 classes: (\d+\.\d) h on 16 cores \+ 1 GPU, "
                  r"(-?\d+\.\d) GB beside the images, peak RSS (\d+\.\d) GB$")


@pytest.fixture(scope="module")
def rehearsed(tmp_path_factory):
    work = tmp_path_factory.mktemp("rehearsal")
    from io import StringIO
    from contextlib import redirect_stdout

    printed = StringIO()
    with redirect_stdout(printed):
        result = rehearsal.main(["--sites", "8", "--classes", "2", "--site-size", "64",
                                 "--deep-image-size", "16", "--epochs", "1", "--folds", "2",
                                 "--work", str(work)])
    return work, result, printed.getvalue().splitlines()


def test_the_set_is_rxrx1_shaped(rehearsed):
    work, _, _ = rehearsed
    meta = pd.read_csv(work / "data" / "metadata.csv")
    assert len(meta) == 8
    assert {"experiment", "plate", "well", "site", "cell_type", "sirna"} <= set(meta.columns)
    assert sorted(meta.cell_type.unique()) == ["HEPG2", "HUVEC", "RPE", "U2OS"]
    assert sorted(meta.sirna.unique()) == ["siRNA_0001", "siRNA_0002"]
    row = meta.iloc[0]
    folder = work / "data" / "images" / row.experiment / f"Plate{row.plate}"
    assert sorted(p.name for p in folder.glob(f"{row.well}_s{row.site}_w*.png")) == \
        [f"{row.well}_s{row.site}_w{c}.png" for c in range(1, 7)]


def test_stages_are_measured(rehearsed):
    _, result, printed = rehearsed
    stages = result["measured"]["stages"]
    for name in ("dataset", "extraction", "tables", "units/svm", "units/xgboost", "deep input cache",
                 "units/resnet18", "results", "report"):
        assert stages[name]["seconds"] > 0, name
        assert stages[name]["peak_rss_mb"] > 0, name
    assert stages["extraction"]["bytes_written"] > 0 and stages["deep input cache"]["bytes_written"] > 0
    epochs = result["measured"]["units"]["resnet18"]["epochs"]
    assert len(epochs) == 2 and all(e["seconds"] > 0 and e["images"] > 0 for e in epochs)  # 1 a fold
    assert "#   folds.n_splits: 5 -> 2" in printed
    assert "#   models[resnet18].epochs: 20 -> 1" in printed


def test_last_line_and_json(rehearsed):
    work, result, printed = rehearsed
    match = LINE.match(printed[-1])
    assert match, printed[-1]
    p = result["projection"]
    assert [float(g) for g in match.groups()] == [round(p["hours"], 1), round(p["gb"], 1),
                                                  round(p["peak_rss_gb"], 1)]
    saved = json.loads((work / "projection.json").read_text())
    assert saved["line"] == printed[-1]


def test_projection_follows_the_laws(rehearsed):
    _, result, _ = rehearsed
    run, p = result["measured"], result["projection"]
    per_site = 125_510 / run["sites"]
    speedup = 16 / run["jobs"] * 0.6
    stages = p["stages"]
    assert stages["extraction"]["seconds"] == pytest.approx(
        run["stages"]["extraction"]["seconds"] * per_site / speedup)
    assert stages["extraction"]["bytes"] == pytest.approx(run["stages"]["extraction"]["bytes_written"] * per_site)
    assert stages["tables"]["seconds"] == pytest.approx(run["stages"]["tables"]["seconds"] * per_site)
    # the input cache was built at 16 px for a configured 256 px: bytes grow with the area
    assert stages["deep input cache"]["bytes"] == pytest.approx(
        run["stages"]["deep input cache"]["bytes_written"] * per_site * (256 / 16) ** 2)
    deep = run["units"]["resnet18"]
    train = sum(deep["n_train"]) / len(deep["n_train"]) / run["sites"]
    test = sum(deep["n_test"]) / len(deep["n_test"]) / run["sites"]
    assert stages["units/resnet18"]["seconds"] == pytest.approx(5 * 125_510 * (train * 20 + test) / 9300)
    assert p["hours"] == pytest.approx(sum(s["seconds"] for s in stages.values()) / 3600)
    assert p["gb"] == pytest.approx(sum(s["bytes"] for s in stages.values()) / 1e9)
    assert p["peak_rss_gb"] == pytest.approx(max(s["peak_rss_bytes"] for s in stages.values()) / 2 ** 30)


def test_classical_units_use_the_scale_bench_models(rehearsed):
    from scale_bench import xgboost_seconds

    _, result, _ = rehearsed
    run = result["measured"]
    unit = run["units"]["xgboost"]
    fitted = unit["fitted"]
    train_sites = sum(unit["n_train"]) / len(unit["n_train"])
    target = {"images": 125_510 * sum(r["train_rows"] for r in fitted) / len(fitted) / train_sites,
              "classes": 1139, "folds": 5, "features": sum(r["features"] for r in fitted) / len(fitted)}
    fit_s = xgboost_seconds(fitted, target)[0] * 5
    predict = sum(unit["predict_seconds"]) / sum(unit["n_test"]) * 125_510 * 1139 / run["classes"]
    assert result["projection"]["stages"]["units/xgboost"]["seconds"] == pytest.approx(
        (fit_s + predict) / (16 / run["jobs"] * 0.6))

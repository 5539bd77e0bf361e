"""The command line: help and defaults, subcommand usage, exit codes of predict/undo/serve."""

from __future__ import annotations

import argparse
import csv
import logging
import re
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from cellcompare import serve
from cellcompare.cli import build_parser, main
from cellcompare.datasets import Sample
from cellcompare.features import FeatureConfig, extract_sample
from tests.test_serve_offline import disk_image, train_classical, write_inputs

ROOT = Path(__file__).resolve().parents[1]
#: Safety net only: how long ``serve`` may take to say where it listens (model load included).
SAFETY_S = 120


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_option_has_help_and_shows_its_default(command):
    parser = _commands()[command]
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{command} {action.dest} has no help text"
        if action.default not in (None, False, []) and action.option_strings:
            assert "default" in action.help or f"(default: {action.default})" in text, \
                f"{command} {action.option_strings[0]} does not show its default {action.default!r}"


def test_defaults_are_shown_in_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--top TOP classes per image in the CSV (default: 3)" in text
    assert "--out OUT CSV to write (default: predictions.csv)" in text
    assert "one file per channel ({name}_w1.png ... {name}_w6.png" in text


@pytest.mark.parametrize("argv, command", [
    (["compare", "--config", "x.yaml", "--weigths", "w.pth"], "compare"),
    (["serve", "models/x", "--prot", "8000"], "serve"),
    (["extract", "data", "--out", "f", "--jbos", "2"], "extract"),
])
def test_a_bad_argument_prints_the_subcommands_usage(capsys, argv, command):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: cellcompare {command} ")
    assert f"cellcompare {command}: error: unrecognized arguments: {argv[-2]} {argv[-1]}" in err


def test_serve_on_a_missing_model_folder_is_one_clear_error(tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    assert main(["serve", str(tmp_path / "models" / "xgboost")]) == 2
    assert f"{tmp_path / 'models' / 'xgboost' / 'serve.json'} not found" in caplog.text
    assert "Traceback" not in caplog.text


def test_serve_says_where_it_listens_and_answers(tmp_path):
    model = train_classical(tmp_path / "m")
    proc = subprocess.Popen([sys.executable, "-m", "cellcompare", "serve", str(model), "--port", "0"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = listening_url(proc)
        image = tiff_bytes(disk_image(20, 7))
        answer = httpx.post(f"{url}/predict", files={"file": ("x.tif", image)}, timeout=SAFETY_S)
        assert answer.status_code == 200 and answer.json()["top"][0]["class"] == "big"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def listening_url(proc: subprocess.Popen) -> str:
    """The ``http://host:port`` of ``serve``'s "serving ... on" log line (read from its stderr)."""
    for line in proc.stderr:  # the line comes once the socket listens; the pipe ends if it exits
        match = re.search(r"serving .* on (http://[\d.]+:\d+) \(POST /predict with the image as "
                          r"multipart field 'file'", line)
        if match:
            return match.group(1)
    proc.wait(timeout=SAFETY_S)
    pytest.fail(f"serve exited ({proc.returncode}) without saying where it listens")


def tiff_bytes(image: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    tifffile.imwrite(buf, image)
    return buf.getvalue()


def train_three_channel(out: Path) -> Path:
    """An SVM on whole-object features of 3-channel disks (big radius 20, small radius 8)."""
    from cellcompare import classical

    cfg = FeatureConfig(preset="minimal", whole_object=True)
    names = ["DNA", "ER", "Actin"]
    rows, y = [], []
    for i in range(12):
        s = Sample(id=f"s{i}", image=disk_image(20 if i % 2 == 0 else 8, i, channels=3),
                   metadata={"channel_names": names})
        rows.append(extract_sample(s, cfg)[1])
        y.append("big" if i % 2 == 0 else "small")
    est = classical.make_classifier("svm", tune=False).fit(pd.concat(rows, ignore_index=True),
                                                           np.array(y))
    return serve.export_model(est, out, channels=names, feature_config=cfg, dtype="uint16")


@pytest.fixture(scope="module")
def three_channel_model(tmp_path_factory):
    return train_three_channel(tmp_path_factory.mktemp("m3") / "m")


def test_a_flat_folder_of_channel_files_is_read_as_multichannel_images(three_channel_model,
                                                                       tmp_path, capsys):
    """RxRx1's B02_s1_w1.png ... _w3.png: one image per site, not one per file."""
    folder = tmp_path / "new_images"
    folder.mkdir()
    images = {well: disk_image(radius, seed, channels=3)  # training images: known answers
              for well, radius, seed in (("B02", 20, 0), ("B03", 8, 1), ("C02", 20, 2))}
    for well, image in images.items():
        for c, plane in enumerate(image, start=1):
            Image.fromarray(plane).save(folder / f"{well}_s1_w{c}.png")
    out = tmp_path / "p.csv"
    assert main(["predict", str(three_channel_model), str(folder), "--out", str(out)]) == 0
    with open(out) as fh:
        table = list(csv.DictReader(fh))
    assert [r["path"] for r in table] == ["B02_1", "B03_1", "C02_1"]
    assert [r["top1_class"] for r in table] == ["big", "small", "big"]
    assert all(r["error"] == "" for r in table)
    predictor = serve.load_predictor(three_channel_model)
    for row, (well, image) in zip(table, images.items()):  # the same as the arrays themselves
        _, proba = predictor.predict_proba([Sample(id=well, image=image)])
        assert float(row["top1_proba"]) == pytest.approx(proba.max(), abs=1e-6)


def test_predict_exits_non_zero_with_one_error_when_every_input_fails(three_channel_model,
                                                                      tmp_path, caplog):
    folder = tmp_path / "gray"
    folder.mkdir()
    for i in range(8):  # one-channel images the three-channel model cannot read
        tifffile.imwrite(folder / f"img{i:03d}.tif", disk_image(20, i)[0])
    caplog.set_level(logging.WARNING)
    out = tmp_path / "p.csv"
    assert main(["predict", str(three_channel_model), str(folder), "--out", str(out)]) == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "none of the 8 inputs could be predicted" in errors[0].getMessage()
    assert "image has 1 channel(s); model expects 3 (DNA, ER, Actin)" in errors[0].getMessage()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 6 and "3 more inputs could not be predicted" in warnings[-1].getMessage()
    assert len(pd.read_csv(out)) == 8 and pd.read_csv(out)["error"].str.contains("model expects").all()


def test_predict_with_some_inputs_failing_exits_zero(tmp_path):
    model = train_classical(tmp_path / "m")
    write_inputs(tmp_path / "in")
    (tmp_path / "in" / "broken.tif").write_bytes(b"not a tiff")
    assert main(["predict", str(model), str(tmp_path / "in"), "--out", str(tmp_path / "p.csv")]) == 0
    table = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert (table["error"] != "").sum() == 1 and len(table) == 5


def test_undo_twice_says_already_restored(tmp_path, capsys, caplog):
    model = train_classical(tmp_path / "m")
    write_inputs(tmp_path / "in")
    before = sorted(p.name for p in (tmp_path / "in").iterdir())
    out = tmp_path / "p.csv"
    assert main(["predict", str(model), str(tmp_path / "in"), "--out", str(out), "--rename",
                 "--yes"]) == 0
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) != before
    capsys.readouterr()
    assert main(["undo", str(tmp_path / "p.undo.json")]) == 0
    assert capsys.readouterr().out.strip() == "restored 4 file name(s)"
    assert main(["undo", str(tmp_path / "p.undo.json")]) == 0
    assert capsys.readouterr().out.strip() == "restored 0 file name(s); 4 already restored"
    assert "not overwriting" not in caplog.text
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == before

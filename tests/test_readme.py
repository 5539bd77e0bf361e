"""Walk the README: every command of its ```bash blocks, run in order on tiny data in tmp_path.

The commands are read from README.md and checked against :data:`STEPS`, the list of how each
runs here: the same arguments, in a scratch folder holding tiny versions of the configuration
files the README names (``configs/demo.yaml`` and ``configs/fly_stages.yaml`` with smaller
synthetic sets and one epoch; ``configs/rxrx1.yaml`` as it is), and the few changes a test needs
written next to the command (smaller synthetic images, a free port). A README command that
stops working, or a new one without a step here, fails this test (and CI).

Commands run in this process through ``cellcompare.cli.main`` (``compare.py`` through its own
``__main__``), except ``serve``, which runs as a server process and answers one request.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import runpy
import shlex
import shutil
import stat
import subprocess
import sys
import time
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
import yaml

from cellcompare.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: Safety net only: how long ``serve`` may take to say where it listens (model load included).
SAFETY_S = 120


def readme_commands(text: str) -> list[str]:
    """The command lines of the ```bash blocks of ``text``, in order, without comments.

    Examples
    --------
    >>> readme_commands("```bash\\n# a comment\\nmake demo   # why\\n  # more\\n```\\n`not me`")
    ['make demo']
    """
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(re.sub(r"\s+", " ", line))
    return commands


@dataclass(frozen=True)
class Step:
    """How one README command runs here.

    ``how`` is ``cli`` (``cellcompare.cli.main`` with the command's arguments), ``script``
    (``compare.py``'s ``__main__``), ``serve`` (a server process) or ``not run``; ``args``
    replace the command's arguments when given, ``extra`` are appended; ``why`` says why the
    step differs from the README's command, or why it is not run.
    """

    command: str
    how: str
    args: tuple[str, ...] | None = None
    extra: tuple[str, ...] = ()
    why: str = ""

    def argv(self) -> list[str]:
        words = shlex.split(self.command)  # without the program: python compare.py, cellcompare
        given = words[2:] if self.how == "script" else words[1:]
        return [*(given if self.args is None else self.args), *self.extra]


CELLCOMPARE = ".venv/bin/cellcompare"
MODEL = "results/demo/models/xgboost"
STEPS: tuple[Step, ...] = (
    Step("make demo", "not run", why="make demo is `make venv` + compare.py on the full demo "
         "(minutes); compare.py runs below on a tiny demo-shaped configs/demo.yaml"),
    Step("make test", "not run", why="make test is this test suite"),
    Step(".venv/bin/python compare.py", "script", args=("--config", "configs/demo.yaml"),
         why="compare.py without --config reads the full demo beside it; here the tiny one"),
    Step(f"{CELLCOMPARE} compare --config configs/demo.yaml", "cli"),
    Step(".venv/bin/python compare.py --config configs/rxrx1.yaml", "script",
         why="needs your RxRx1 copy: stops at once, before any work, saying what is missing"),
    Step(".venv/bin/python compare.py --config configs/fly_stages.yaml", "script"),
    Step(".venv/bin/python compare.py --pdf", "script", args=("--config", "configs/demo.yaml", "--pdf"),
         why="the tiny demo again, resumed, and its PDF"),
    Step(f"{CELLCOMPARE} fetch results/cells --n 50 --kind uncertain", "not run",
         why="needs a cell-task run: tests/test_cells_handful.py runs `cellcompare fetch` on one "
             "and puts the filled-in CSV back into labels.annotations"),
    Step(f"{CELLCOMPARE} score results/cells/models/svm new_plate/ --dataset-config dataset.yaml "
         "--out scores", "not run",
         why="needs an exported cell model: tests/test_cells_handful.py runs `cellcompare score` "
             "with the cell models its compare exports"),
    Step(f"{CELLCOMPARE} synth --kind cellpainting --out data/cp --classes 4 --per-class 8 --seed 0",
         "cli", extra=("--size", "96", "--per-class", "2"),
         why="8 sites of 96 px instead of 32 of 512 px (the last --per-class counts)"),
    Step(f"{CELLCOMPARE} synth --kind stages --out data/stages --classes 5 --per-class 10 --seed 0",
         "cli", extra=("--size", "96x192"), why="96x192-px embryos instead of 420x1110"),
    Step(f"{CELLCOMPARE} summary data/cp --out data/cp_summary", "cli"),
    Step(f"{CELLCOMPARE} extract data/cp --out feats/cp --preset standard --jobs 2", "cli"),
    Step(f"{CELLCOMPARE} extract data/cp --out feats/cp --scheduler tcp://127.0.0.1:8786", "cli",
         why="no scheduler listens: every image is done, so none is contacted"),
    Step(f"{CELLCOMPARE} compact feats/cp", "cli"),
    Step(f"{CELLCOMPARE} compare --config configs/fly_stages.yaml", "cli"),
    Step(f"{CELLCOMPARE} report results/demo", "cli"),
    Step(f"{CELLCOMPARE} export results/demo --to anndata --predictions", "cli"),
    Step(f"{CELLCOMPARE} predict {MODEL} new_images/ --top 3 --out predictions.csv", "cli"),
    Step(f"{CELLCOMPARE} predict {MODEL} new_images/ --rename --rename-channel-files", "cli"),
    Step(f"{CELLCOMPARE} predict {MODEL} new_images/ --rename --rename-channel-files --yes", "cli"),
    Step(f"{CELLCOMPARE} undo predictions.undo.json", "cli"),
    Step(f"{CELLCOMPARE} serve {MODEL} --host 127.0.0.1 --port 8000", "serve",
         args=("serve", MODEL, "--host", "127.0.0.1", "--port", "0"),
         why="--port 0: a free port, read from the line saying where it listens"),
    Step(f"{CELLCOMPARE} predict {MODEL} plate7/ --group plate7 --out plate7.csv", "cli",
         args=("predict", MODEL, "new_images/", "--group", "plate7", "--out", "plate7.csv"),
         why="new_images/ is the plate here (one plate's channel files)"),
    Step("openssl rand -hex 32 > token && chmod 600 token", "not run",
         why="a shell line writing a random token; tests/test_serve_access.py writes its own"),
    Step(f"{CELLCOMPARE} serve {MODEL} --host 0.0.0.0 --token-file token", "not run",
         why="tests/test_serve_access.py serves with a token file on 0.0.0.0 (401 without it)"),
    Step('curl -H "Authorization: Bearer $(cat token)" -F file=@site.tif '
         "http://127.0.0.1:8000/predict", "not run",
         why="tests/test_serve_access.py sends these requests with and without the token"),
    Step('curl -H "Authorization: Bearer $(cat token)" -F group=plate7 -F files=@a.tif '
         "-F files=@b.tif http://127.0.0.1:8000/predict/batch", "not run",
         why="tests/test_serve_access.py and tests/test_serve_http.py send batches"),
    Step("docker build -t cellcompare-serve .", "not run",
         why="no container runtime here: tests/test_serve_docker.py checks the Dockerfile's "
             "commands against the CLI and runs its CMD and HEALTHCHECK"),
    Step('docker run -d -p 8000:8000 -v "$PWD/results/demo/models/xgboost:/model:ro" '
         '-v "$PWD/token:/run/secrets/token:ro" cellcompare-serve', "not run",
         why="no container runtime here (tests/test_serve_docker.py)"),
    Step('docker run -d --gpus all -p 8000:8000 -v "$PWD/results/demo/models/resnet18:/model:ro" '
         '-v "$PWD/token:/run/secrets/token:ro" cellcompare-serve cellcompare serve /model '
         "--host 0.0.0.0 --token-file /run/secrets/token --device cuda", "not run",
         why="no container runtime or GPU here (tests/test_serve_docker.py)"),
)


def test_every_readme_command_has_a_step():
    assert [s.command for s in STEPS] == readme_commands(README.read_text(encoding="utf-8"))
    assert all(s.why for s in STEPS if s.how == "not run" or s.args is not None or s.extra)


def _tiny(name: str, changes: dict, models: dict) -> dict:
    """``configs/{name}.yaml`` with ``changes`` merged in and ``models[label].params`` updated."""
    config = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())

    def merge(into: dict, new: dict) -> None:
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(config, changes)
    specs = [{"name": m} if isinstance(m, str) else m for m in config["models"]]
    for spec in specs:
        spec["params"] = {**spec.get("params", {}), **models.get(spec.get("label", spec["name"]), {})}
    config["models"] = specs
    return config


TINY_DEEP = {"epochs": 1, "image_size": 32, "batch_size": 16, "cells_per_image": 4}
TINY_CONFIGS = {
    # the svm's mutual-information selection is off: ~13 s per fold on 2 busy cores, and the
    # resumed runs, which are what this walk checks, skip it anyway
    "demo": _tiny("demo", {"dataset": {"synth": {"classes": 2, "per_class": 6, "size": 96}}},
                  {"resnet18": TINY_DEEP, "smallcnn": TINY_DEEP, "svm": {"mi_top_k": None},
                   "resnet18_ssl": {**TINY_DEEP, "ssl": {"epochs": 1, "batch_size": 64}}}),
    "fly_stages": _tiny("fly_stages", {"dataset": {"synth": {"classes": 3, "per_class": 5, "size": 96}}},
                        {"smallcnn": {"epochs": 1, "image_size": 32}, "xgboost": {"n_estimators": 20}}),
}


@dataclass
class Ran:
    """A command's exit status, standard output and error, and the ``cellcompare`` log."""

    code: int
    out: str
    err: str
    log: str = ""
    seconds: float = 0.0


def run_step(step: Step) -> Ran:
    """Run ``step`` in this process (``cli`` or ``script``), capturing its output and log."""
    out, err, log = io.StringIO(), io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("cellcompare")
    level, logger.level = logger.level, logging.INFO
    logger.addHandler(handler)
    argv, start = sys.argv, time.perf_counter()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                if step.how == "script":
                    sys.argv = ["compare.py", *step.argv()]
                    runpy.run_path(str(ROOT / "compare.py"), run_name="__main__")
                    code = 0  # compare.py always ends with sys.exit
                else:
                    code = main(step.argv())
            except SystemExit as exc:
                code = int(exc.code or 0)
    finally:
        sys.argv = argv
        logger.removeHandler(handler)
        logger.level = level
    return Ran(code, out.getvalue(), err.getvalue(), log.getvalue(), time.perf_counter() - start)


@contextmanager
def scratch(folder: Path) -> Iterator[Path]:
    """Work in ``folder`` under umask 022 with an empty torch hub (no ImageNet file, as on CI)."""
    cwd, mask, hub = Path.cwd(), os.umask(0o022), torch.hub.get_dir()
    (folder / "hub").mkdir(parents=True)
    torch.hub.set_dir(str(folder / "hub"))
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(cwd)
        os.umask(mask)
        torch.hub.set_dir(hub)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _serve_once(step: Step, site: np.ndarray) -> tuple[str, dict]:
    """Start ``step``'s server, post ``site`` as a multi-page TIFF, return its log line and answer."""
    proc = subprocess.Popen([sys.executable, "-m", "cellcompare", *step.argv()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:  # comes once the socket listens; the pipe ends if serve exits
            if "serving" in line:
                break
        else:
            proc.wait(timeout=SAFETY_S)
            pytest.fail(f"{step.command}: serve exited ({proc.returncode}) before listening")
        url = re.search(r"on (http://127\.0\.0\.1:\d+) ", line).group(1)
        assert httpx.get(f"{url}/health", timeout=SAFETY_S).json() == {"status": "ok"}
        buf = io.BytesIO()
        tifffile.imwrite(buf, site)
        answer = httpx.post(f"{url}/predict", files={"file": ("site.tif", buf.getvalue())},
                            timeout=SAFETY_S)
        assert answer.status_code == 200, answer.text
        return line, answer.json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_walk_the_readme(tmp_path):
    steps = {s.command: s for s in STEPS}
    with scratch(tmp_path):
        (tmp_path / "configs").mkdir()
        for name, config in TINY_CONFIGS.items():
            (tmp_path / "configs" / f"{name}.yaml").write_text(yaml.safe_dump(config))
        shutil.copy(ROOT / "configs" / "rxrx1.yaml", tmp_path / "configs" / "rxrx1.yaml")
        ran: dict[str, Ran] = {}

        def walk(command: str, code: int = 0) -> Ran:
            result = ran[command] = run_step(steps[command])
            assert result.code == code, (f"{command} exited {result.code}\n{result.err[-3000:]}\n"
                                         f"{result.log[-3000:]}")
            return result

        # the comparison: the demo twice (a resumed run refits nothing), the class folders twice
        first = walk(".venv/bin/python compare.py")
        demo = tmp_path / "results" / "demo"
        assert first.out.strip().splitlines()[-1] == str(Path("results/demo/report.html"))
        assert first.out.splitlines()[0].split()[:2] == ["model", "accuracy"]
        metrics = json.loads((demo / "metrics.json").read_text())
        assert set(metrics["models"]) == {"svm", "xgboost", "resnet18", "resnet18_ssl", "svm_ssl", "smallcnn"}
        assert metrics["task"]["unit_name"] == "images" and metrics["task"]["n_units"] == 12
        assert (demo / "models" / "xgboost" / "serve.json").is_file()
        assert _mode(demo / "report.html") == 0o644 and _mode(demo / "metrics.json") == 0o644
        again = walk(f"{CELLCOMPARE} compare --config configs/demo.yaml")
        assert "reusing folds from results/demo/folds.csv" in again.log
        assert "fitting" not in again.log and again.log.count("skipping finished unit") == 6 * 3
        assert json.loads((demo / "metrics.json").read_text())["models"] == metrics["models"]

        rxrx1 = walk(".venv/bin/python compare.py --config configs/rxrx1.yaml", code=2)
        assert ("configs/rxrx1.yaml: models[3].params.weights: ImageNet weights (torchvision "
                "ResNet18_Weights.IMAGENET1K_V1) not found") in rxrx1.log
        assert not (tmp_path / "results" / "rxrx1").exists()

        walk(".venv/bin/python compare.py --config configs/fly_stages.yaml")
        stages = tmp_path / "results" / "stages"
        fly = json.loads((stages / "metrics.json").read_text())
        assert set(fly["models"]) == {"linear_svm", "xgboost", "smallcnn"}
        assert (pd.read_csv(stages / "folds.csv", keep_default_na=False)["group"] == "").all()

        from cellcompare.reports.pdf import PdfError, find_browser
        try:
            find_browser()
        except PdfError:
            pdf = walk(".venv/bin/python compare.py --pdf", code=2)
            assert "no headless browser found" in pdf.err
        else:
            pdf = walk(".venv/bin/python compare.py --pdf")
            assert (demo / "report.pdf").read_bytes()[:5] == b"%PDF-"
            assert pdf.out.strip().splitlines()[-1].endswith("report.pdf")

        # the steps on their own
        walk(f"{CELLCOMPARE} synth --kind cellpainting --out data/cp --classes 4 --per-class 8 --seed 0")
        cp_sites = pd.read_csv(tmp_path / "data" / "cp" / "metadata.csv")
        assert len(cp_sites) == 8
        walk(f"{CELLCOMPARE} synth --kind stages --out data/stages --classes 5 --per-class 10 --seed 0")
        assert sorted(p.name for p in (tmp_path / "data" / "stages").iterdir() if p.is_dir()) == \
            [f"stage{i}" for i in range(1, 6)]
        summary = walk(f"{CELLCOMPARE} summary data/cp --out data/cp_summary")
        assert json.loads(Path(summary.out.strip()).read_text())
        assert (tmp_path / "data" / "cp_summary" / "counts.csv").is_file()

        walk(f"{CELLCOMPARE} extract data/cp --out feats/cp --preset standard --jobs 2")
        parts = sorted((tmp_path / "feats" / "cp" / "image").glob("*.parquet"))
        assert [p.name for p in parts] == ["shard-000001-000256.parquet"]   # 8 images, one shard
        from cellcompare.features import shards
        assert [e.number for e in shards.entries(parts[0])] == list(range(1, 9))
        dask = walk(f"{CELLCOMPARE} extract data/cp --out feats/cp --scheduler tcp://127.0.0.1:8786")
        assert "0 of 8 images to extract" in dask.log
        compacted = walk(f"{CELLCOMPARE} compact feats/cp").out.split()
        assert [Path(p).name for p in compacted] == ["cell", "image"]
        assert all(Path(p).is_dir() for p in compacted)

        refly = walk(f"{CELLCOMPARE} compare --config configs/fly_stages.yaml")
        assert "reusing folds from results/stages/folds.csv" in refly.log and "fitting" not in refly.log
        assert json.loads((stages / "metrics.json").read_text())["models"] == fly["models"]

        before = (demo / "report.html").stat().st_mtime_ns
        report = walk(f"{CELLCOMPARE} report results/demo")
        assert report.out.strip() == str(Path("results/demo/report.html"))
        assert (demo / "report.html").stat().st_mtime_ns > before and _mode(demo / "report.html") == 0o644
        walk(f"{CELLCOMPARE} export results/demo --to anndata --predictions")
        import anndata

        profiles = anndata.read_h5ad(demo / "anndata" / "image.h5ad")
        assert profiles.n_obs == len(pd.read_csv(demo / "folds.csv")) and profiles.X.dtype == np.float32
        assert any(c.startswith("Metadata_Prediction_") for c in profiles.obs.columns)
        assert (demo / "anndata" / "cell.h5ad").is_file()

        # new images: one plate's channel files, as a microscope writes them
        plate = next((tmp_path / "data" / "cp" / "images").glob("*/Plate1"))
        shutil.copytree(plate, tmp_path / "new_images")
        names = _digest(tmp_path / "new_images")
        n_sites = len(names) // 6
        classes = json.loads((demo / "models" / "xgboost" / "serve.json").read_text())["classes"]
        walk(f"{CELLCOMPARE} predict {MODEL} new_images/ --top 3 --out predictions.csv")
        table = pd.read_csv(tmp_path / "predictions.csv", keep_default_na=False)
        assert len(table) == n_sites and (table["error"] == "").all()
        assert set(table["top1_class"]) <= set(classes)
        dry = walk(f"{CELLCOMPARE} predict {MODEL} new_images/ --rename --rename-channel-files")
        assert "dry run; pass --yes to rename" in dry.out and dry.out.count(" -> ") == len(names)
        assert _digest(tmp_path / "new_images") == names
        walk(f"{CELLCOMPARE} predict {MODEL} new_images/ --rename --rename-channel-files --yes")
        renamed = _digest(tmp_path / "new_images")
        assert not set(renamed) & set(names) and sorted(renamed.values()) == sorted(names.values())
        undo = walk(f"{CELLCOMPARE} undo predictions.undo.json")
        assert undo.out.strip() == f"restored {len(names)} file name(s)"
        assert _digest(tmp_path / "new_images") == names  # byte-exact, same names
        walk(f"{CELLCOMPARE} predict {MODEL} plate7/ --group plate7 --out plate7.csv")
        plate7 = pd.read_csv(tmp_path / "plate7.csv", keep_default_na=False)
        assert len(plate7) == n_sites and (plate7["error"] == "").all()
        # fewer sites than --min-plate-images of a plate it never saw: the training plates' mean
        assert plate7["normalization"].str.contains("averaged over the 3 training plates").all()

        stem = sorted(plate.glob("*_w1.png"))[0].name[:-len("_w1.png")]
        site = np.stack([_png(plate / f"{stem}_w{c}.png") for c in range(1, 7)])  # (6, H, W)
        line, answer = _serve_once(steps[f"{CELLCOMPARE} serve {MODEL} --host 127.0.0.1 --port 8000"],
                                   site)
        assert f"serving {MODEL} on http://127.0.0.1:" in line and "multipart field 'file'" in line
        assert sorted(t["class"] for t in answer["top"]) == sorted(classes)  # top-3 of 2 classes
        assert answer["shape"] == list(site.shape)
    assert set(ran) == {s.command for s in STEPS if s.how in ("cli", "script")}
    logging.getLogger(__name__).info("README walk: %s", "; ".join(
        f"{c.split(' ', 2)[-1][:40]} {r.seconds:.0f} s" for c, r in ran.items()))


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path))

"""RxRx1 rehearsed at its shape: a synthetic set, a full compare, per-stage costs, a projection.

1. ``datasets.synth.make_rxrx1_like`` writes ``--sites`` sites of ``--site-size``² x 6 channels
   (RxRx1: 512) over 4 cell types (one experiment each, up to 4 plates, 2 sites a well), with
   ``--classes`` siRNA classes, in RxRx1's folder layout (``metadata.csv`` with experiment, plate,
   well, site, cell_type, sirna; ``images/{experiment}/Plate{p}/{well}_s{site}_w{c}.png``).
2. ``comparison.run`` runs ``configs/rxrx1.yaml`` on it. Only the dataset path, the output folder
   and settings a CPU cannot afford are changed (fold count, deep epochs, deep image size, and
   ImageNet weights when torchvision's file is absent); each change is printed.
3. ``metrics.json`` ``stages`` (``comparison.stages``) gives seconds, peak RSS and bytes written
   per stage; the deep units' history gives the seconds of each training epoch.
4. :func:`project` scales them to RxRx1 (125,510 sites, 1,139 classes) on ``--cores`` cores and
   one GPU, by these laws:

   * CPU stages that run in ``jobs`` workers (extraction, deep input and crop caches): seconds per
     site x sites, over a speedup of ``cores / jobs x --efficiency``; serial stages (dataset,
     tables, results, report): seconds per site x sites;
   * classical units: ``scale_bench.svm_seconds`` / ``scale_bench.xgboost_seconds`` over the
     run's own fits (its ``fitted`` records) or, with ``--scale-records``, over ``scale_bench
     --out``'s many-class points, at RxRx1's rows (sites x the unit's rows per site), the run's
     feature count, 1,139 classes and the configured folds, over the same speedup; plus the
     run's prediction seconds per site and class;
   * deep units: (training images x configured epochs + test images) x configured folds at
     RxRx1, over ``--gpu-img-s`` (capped at ``cores x --loader-img-s-per-core`` when given);
   * bytes: per site, except the input cache (x the configured image side squared over the
     one run), the report (per class), results (per site, plus every site's probability of
     every class for every model, 8 B each) and deep units (checkpoints: unchanged);
   * peak RSS: worker stages: the base RSS (smallest stage peak) plus their excess x
     ``cores / jobs``; in-memory stages (dataset, tables, classical units, results, report):
     their peak plus twice the image table and sampled cell rows that the extra sites add
     (float64), and for classical units rows x classes x 8 B (gradients or margins); deep
     units unchanged. The largest stage wins.

The projection goes to ``<work>/projection.json`` beside the run (``<work>/data``,
``<work>/run``). The last line printed is ``projection: 125510 sites, 1139 classes: <H> h on
16 cores + 1 GPU, <G> GB beside the images, peak RSS <R> GB``.

Usage: python benchmarks/rxrx1_rehearsal.py --sites 1000 --classes 60 --work /tmp/rehearsal
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_bench import svm_seconds, xgboost_seconds  # noqa: E402  (the sibling benchmark's cost models)

logger = logging.getLogger("rxrx1_rehearsal")

ROOT = Path(__file__).resolve().parents[1]
RXRX1_SITES, RXRX1_CLASSES = 125_510, 1139
#: The issue's goals for the projection.
GOALS = {"hours": 8.0, "gb": 100.0, "rss_gb": 64.0}
WORKER_STAGES = ("extraction", "deep input cache", "deep crop cache")
SERIAL_STAGES = ("dataset", "tables", "results", "report")
CLASS_BYTES_STAGES = ("results", "report")


# -- the set and the run --------------------------------------------------------------------------

def write_set(root: Path, *, sites: int, classes: int, size: int, seed: int = 0) -> Path:
    """The RxRx1-shaped synthetic set (``datasets.synth.make_rxrx1_like``: 4 cell types)."""
    from cellcompare.datasets.synth import make_rxrx1_like

    if (root / "metadata.csv").is_file():
        logger.info("reusing the synthetic set in %s", root)
        return root
    return make_rxrx1_like(root, sites=sites, classes=classes, size=size, seed=seed)


def rehearsal_config(source: Path, data: Path, out: Path, *, folds: int | None, epochs: int | None,
                     image_size: int | None) -> tuple[Any, list[str]]:
    """``source``'s configuration on ``data``, writing to ``out``, with the CPU's lowered settings.

    Returns the ``CompareConfig``, one line per changed setting (``key: before -> after``) and
    the settings projected (``folds``, and per model label its ``params``) as the file has them.
    """
    from cellcompare.comparison.config import CompareConfig
    from cellcompare.config import read_yaml
    from cellcompare.deep.models import imagenet_weights_path

    raw = read_yaml(source)
    target = {"folds": int(raw["folds"]["n_splits"]),
              "params": {m.get("label", m["name"]): dict(m.get("params") or {}) for m in raw["models"]}}
    changes = [f"dataset.path: {raw['dataset']['path']} -> {data}", f"output: {raw['output']} -> {out}"]
    raw["dataset"]["path"], raw["output"] = str(data), str(out)
    excluded = raw["dataset"].get("exclude_classes") or []
    if excluded:  # the synthetic set has no control wells, and naming an absent class is an error
        changes.append(f"dataset.exclude_classes: {excluded} -> [] (the synthetic set has no controls)")
        raw["dataset"]["exclude_classes"] = []
    if folds is not None and folds != raw["folds"]["n_splits"]:
        changes.append(f"folds.n_splits: {raw['folds']['n_splits']} -> {folds}")
        raw["folds"]["n_splits"] = folds
    for model in raw["models"]:
        params = model.setdefault("params", {})
        if model["name"] not in ("resnet18", "smallcnn"):
            continue
        label = model.get("label", model["name"])
        for key, value in (("epochs", epochs), ("image_size", image_size)):
            if value is not None and params.get(key) != value:
                changes.append(f"models[{label}].{key}: {params.get(key)} -> {value}")
                params[key] = value
        if params.get("weights") == "imagenet" and not imagenet_weights_path().is_file():
            changes.append(f"models[{label}].weights: imagenet -> none ({imagenet_weights_path()} absent)")
            params["weights"] = "none"
        params["progress"] = False
    return CompareConfig.from_dict(raw, source=source), changes, target


def measured(metrics: dict, config: Any, target: dict) -> dict:
    """What :func:`project` reads from a run's ``metrics.json``: sites, classes, stages, units.

    ``target`` is :func:`rehearsal_config`'s record of the settings projected (folds, and the
    deep epochs and image sizes before lowering).
    """
    units: dict[str, dict] = {}
    for spec in config.models:
        entry = metrics["models"][spec.label]
        folds = [f for f in entry["folds"] if f["fold"] >= 0]
        unit = {"name": spec.name, "kind": folds[0]["kind"], "folds": len(folds),
                "n_train": [f["n_train"] for f in folds], "n_test": [f["n_test"] for f in folds],
                "fit_seconds": [f["fit_seconds"] for f in folds],
                "predict_seconds": [f["predict_seconds"] for f in folds]}
        if unit["kind"] == "deep":
            unit["epochs"] = [{"seconds": h["seconds"], "images": h["images"]}
                              for f in folds for h in f.get("history", [])]
            wanted = target["params"][spec.label]
            unit["target_epochs"] = int(wanted.get("epochs", spec.params.get("epochs", 1)))
            unit["image_size"] = int(spec.params.get("image_size", 256))
            unit["target_image_size"] = int(wanted.get("image_size", unit["image_size"]))
        else:
            unit["fitted"] = [dict(f["fitted"], fit_s=f["fit_seconds"]) for f in folds if "fitted" in f]
        units[spec.label] = unit
    return {"sites": int(metrics["dataset"]["n_images"]), "classes": len(metrics["classes"]),
            "jobs": int(config.jobs), "folds": int(config.folds.n_splits),
            "target_folds": int(target["folds"]),
            "stages": {k: {"seconds": float(v["seconds"]), "peak_rss_mb": float(v["peak_rss_mb"]),
                           "bytes_written": int(v["bytes_written"])} for k, v in metrics["stages"].items()},
            "units": units,
            "table_bytes_per_site": 8 * (int(metrics["features"]["n_features"])
                                         + int(config.cell_table.cells_per_image or 0)
                                         * int(metrics["features"].get("n_cell_features") or 0))}


# -- the projection (pure) ------------------------------------------------------------------------

def classical_seconds(unit: dict, run: dict, *, sites: int, classes: int,
                      records: list[dict] | None = None) -> float:
    """Fit seconds of all target folds of one classical unit on the run's threads (cost models
    of ``scale_bench``, over ``records`` when given, else the unit's own fits), plus its
    prediction time per site and class."""
    fitted = unit["fitted"]
    if not fitted:
        raise ValueError(f"unit {unit['name']} has no 'fitted' records in metrics.json")
    train_sites = sum(unit["n_train"]) / len(unit["n_train"])
    rows_per_site = sum(r["train_rows"] for r in fitted) / len(fitted) / train_sites
    target = {"images": sites * rows_per_site, "classes": classes, "folds": run["target_folds"],
              "features": sum(r["features"] for r in fitted) / len(fitted)}
    # at <= classical.scale.MANY_CLASSES classes the svm is a calibrated SVC with no iteration
    # count: the cost model then scales one whole fit by rows x features x classes
    model_records = [dict(r, iterations=r.get("iterations", 1)) for r in (records or fitted)]
    model = svm_seconds if unit["name"] == "svm" else xgboost_seconds
    fit_s, _ = model(model_records, target)
    predict_per_site = sum(unit["predict_seconds"]) / max(1, sum(unit["n_test"]))
    return run["target_folds"] * fit_s + predict_per_site * sites * classes / run["classes"]


def scale_records(records: list[dict], name: str) -> list[dict]:
    """The ``scale_bench --out`` records its own projection uses for ``name`` (svm: the
    OvRLinearSVM points; xgboost: the bounded points above ``MANY_CLASSES``)."""
    from cellcompare.classical.scale import MANY_CLASSES

    if name == "svm":
        return [r for r in records if r.get("estimator") == "OvRLinearSVM"]
    return [r for r in records if r.get("estimator") == "EarlyStoppingXGB" and r["classes"] > MANY_CLASSES]


def deep_seconds(unit: dict, run: dict, *, sites: int, img_s: float) -> float:
    """GPU seconds of all target folds of one deep unit: training images x epochs + test images."""
    train_share = sum(unit["n_train"]) / len(unit["n_train"]) / run["sites"]
    test_share = sum(unit["n_test"]) / len(unit["n_test"]) / run["sites"]
    images = sites * (train_share * unit["target_epochs"] + test_share)
    return run["target_folds"] * images / img_s


def project(run: dict, *, sites: int = RXRX1_SITES, classes: int = RXRX1_CLASSES, cores: int = 16,
            efficiency: float = 0.6, gpu_img_s: float = 9300.0,
            loader_img_s_per_core: float | None = None, scale: list[dict] | None = None) -> dict:
    """Hours, bytes and peak RSS of the run's stages at ``sites`` and ``classes`` (module laws).

    Parameters
    ----------
    run : dict
        :func:`measured`'s record: ``sites``, ``classes``, ``jobs``, ``folds``, ``target_folds``,
        ``stages`` (seconds, peak_rss_mb, bytes_written), ``units`` and ``table_bytes_per_site``.
    scale : list of dict, optional
        ``scale_bench --out`` records: the classical cost models are fitted over them instead
        of the run's own (few-class, few-row) fits.

    Returns
    -------
    dict
        ``stages``: per stage its projected ``seconds``, ``bytes`` and ``peak_rss_bytes`` with
        the law used; ``hours``, ``gb`` (10⁹ B) and ``peak_rss_gb`` (2³⁰ B) in total.

    Examples
    --------
    >>> run = {"sites": 10, "classes": 2, "jobs": 2, "folds": 2, "target_folds": 5, "units": {},
    ...        "table_bytes_per_site": 1000,
    ...        "stages": {"extraction": {"seconds": 20.0, "peak_rss_mb": 1024.0, "bytes_written": 10 ** 7},
    ...                   "tables": {"seconds": 1.0, "peak_rss_mb": 512.0, "bytes_written": 10 ** 6}}}
    >>> p = project(run, sites=1000, cores=4, efficiency=1.0)
    >>> p["stages"]["extraction"]["seconds"], p["stages"]["tables"]["seconds"], round(p["gb"], 2)
    (1000.0, 100.0, 1.1)
    >>> p["stages"]["tables"]["peak_rss_bytes"] == 512 * 2 ** 20 + 2 * 1000 * (1000 - 10)
    True
    """
    speedup = cores / run["jobs"] * efficiency
    per_site, class_ratio = sites / run["sites"], classes / run["classes"]
    base = min(s["peak_rss_mb"] for s in run["stages"].values()) * 2 ** 20
    # in-memory stages hold the image table and the sampled cell rows, float64 and one copy
    table_growth = 2 * run["table_bytes_per_site"] * (sites - run["sites"])
    rate = gpu_img_s if loader_img_s_per_core is None else min(gpu_img_s, cores * loader_img_s_per_core)
    deep_units = {f"units/{k}": u for k, u in run["units"].items() if u["kind"] == "deep"}
    cache_area = max([(u["target_image_size"] / u["image_size"]) ** 2 for u in deep_units.values()] or [1.0])
    out = {}
    for name, stage in run["stages"].items():
        peak = stage["peak_rss_mb"] * 2 ** 20
        unit = run["units"].get(name.removeprefix("units/"))
        if name in WORKER_STAGES:
            seconds, law = stage["seconds"] * per_site / speedup, "per site, parallel"
            rss = base + (peak - base) * cores / run["jobs"]
            written = stage["bytes_written"] * per_site * (cache_area if name == "deep input cache" else 1)
        elif unit is not None and unit["kind"] == "deep":
            seconds, law = deep_seconds(unit, run, sites=sites, img_s=rate), f"GPU at {rate:.0f} img/s"
            rss, written = peak, stage["bytes_written"]
        elif unit is not None:
            records = scale_records(scale, unit["name"]) if scale else None
            seconds = classical_seconds(unit, run, sites=sites, classes=classes, records=records) / speedup
            law = f"scale_bench cost model over {'scale_bench records' if records else 'its fits'}, parallel"
            rows = sites * (run["target_folds"] - 1) / run["target_folds"]
            rss = peak + table_growth + rows * classes * 8  # + gradients or margins, float32 x 2
            written = stage["bytes_written"] * per_site
        else:
            seconds, law = stage["seconds"] * per_site, "per site, serial"
            rss = peak + table_growth
            if name == "report":  # per-class tables and figures, bounded galleries
                written, law = stage["bytes_written"] * class_ratio, law + " (bytes per class)"
            elif name == "results":  # every site's probabilities of every class, per model
                written = stage["bytes_written"] * per_site + sites * classes * 8 * len(run["units"])
                law += " (+ predictions sites x classes x models x 8 B)"
            else:
                written = stage["bytes_written"] * per_site
        out[name] = {"seconds": seconds, "bytes": written, "peak_rss_bytes": rss, "law": law}
    return {"sites": sites, "classes": classes, "cores": cores, "efficiency": efficiency,
            "gpu_img_s": rate, "stages": out,
            "hours": sum(s["seconds"] for s in out.values()) / 3600,
            "gb": sum(s["bytes"] for s in out.values()) / 1e9,
            "peak_rss_gb": max(s["peak_rss_bytes"] for s in out.values()) / 2 ** 30}


def projection_line(p: dict) -> str:
    """The rehearsal's last line.

    Examples
    --------
    >>> projection_line({"sites": 125510, "classes": 1139, "cores": 16, "hours": 7.25, "gb": 99.0,
    ...                  "peak_rss_gb": 12.0})
    'projection: 125510 sites, 1139 classes: 7.2 h on 16 cores + 1 GPU, 99.0 GB beside the images, peak RSS 12.0 GB'
    """
    return (f"projection: {p['sites']} sites, {p['classes']} classes: {p['hours']:.1f} h on "
            f"{p['cores']} cores + 1 GPU, {p['gb']:.1f} GB beside the images, peak RSS {p['peak_rss_gb']:.1f} GB")


# -- printing and main ----------------------------------------------------------------------------

def stage_rows(run: dict, p: dict) -> list[str]:
    """A markdown table: measured and projected seconds, peak RSS and bytes per stage."""
    rows = ["| stage | s | peak RSS MB | MB written | projected h | projected GB | projected RSS GB | law |",
            "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, s in run["stages"].items():
        q = p["stages"][name]
        rows.append(f"| {name} | {s['seconds']:.1f} | {s['peak_rss_mb']:.0f} | {s['bytes_written'] / 1e6:.1f} "
                    f"| {q['seconds'] / 3600:.2f} | {q['bytes'] / 1e9:.1f} | {q['peak_rss_bytes'] / 2 ** 30:.1f} "
                    f"| {q['law']} |")
    for label, unit in run["units"].items():
        for i, e in enumerate(unit.get("epochs", [])):
            rows.append(f"| deep training {label} epoch {i + 1} | {e['seconds']:.1f} | | | | | | "
                        f"{e['images']} images, {e['images'] / max(e['seconds'], 1e-9):.1f} img/s (CPU) |")
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=60)
    parser.add_argument("--site-size", type=int, default=512, help="side of a site (RxRx1: 512)")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "rxrx1.yaml")
    parser.add_argument("--work", type=Path, required=True, help="folder for data/, run/, projection.json")
    parser.add_argument("--folds", type=int, default=2, help="fold count run here (the config's is projected)")
    parser.add_argument("--epochs", type=int, default=1, help="deep epochs run here (the config's are projected)")
    parser.add_argument("--deep-image-size", type=int, default=128,
                        help="deep input side run here (the config's is projected for the input cache)")
    parser.add_argument("--gpu-img-s", type=float, default=9300.0,
                        help="GPU training rate (default: the ResNet18 ceiling measured on an H100)")
    parser.add_argument("--loader-img-s-per-core", type=float, default=None,
                        help="cap the GPU rate at cores x this (benchmarks/loader_bench.py)")
    parser.add_argument("--scale-records", type=Path, default=None,
                        help="scale_bench --out JSON: fit the classical cost models over its records")
    parser.add_argument("--reproject", action="store_true",
                        help="no run: project again from <work>/run/metrics.json (same settings)")
    parser.add_argument("--cores", type=int, default=16)
    parser.add_argument("--efficiency", type=float, default=0.6, help="parallel efficiency, jobs -> cores")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # as scale_bench: spinning OpenMP threads
    from cellcompare.comparison import run as run_compare

    start = time.perf_counter()
    scale = json.loads(args.scale_records.read_text())["records"] if args.scale_records else None
    if args.reproject:  # the settings must be those the run was made with
        config, changes, target = rehearsal_config(args.config, args.work / "data", args.work / "run",
                                                   folds=args.folds, epochs=args.epochs,
                                                   image_size=args.deep_image_size)
        metrics = json.loads((Path(config.output) / "metrics.json").read_text())
        print(f"# projected again from {config.output}/metrics.json ({metrics['dataset']['n_images']} sites)")
        return _finish(args, measured(metrics, config, target), changes, scale, start)
    data = write_set(args.work / "data", sites=args.sites, classes=args.classes, size=args.site_size)
    synth_s = time.perf_counter() - start
    config, changes, target = rehearsal_config(args.config, data, args.work / "run", folds=args.folds,
                                       epochs=args.epochs, image_size=args.deep_image_size)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.1f}; {args.sites} sites of 6 x {args.site_size}², "
          f"{args.classes} classes, written in {synth_s:.0f} s; {args.config} with:")
    for line in changes:
        print(f"#   {line}")
    if Path(config.output).exists():  # a resumed run would skip its finished stages' costs
        logger.info("removing the previous run %s", config.output)
        shutil.rmtree(config.output)
    out = run_compare(config)
    metrics = json.loads((out / "metrics.json").read_text())
    return _finish(args, measured(metrics, config, target), changes, scale, start)


def _finish(args: argparse.Namespace, run: dict, changes: list[str], scale: list[dict] | None,
            start: float) -> dict:
    """Project, print the table, the goals and the last line; write ``projection.json``."""
    p = project(run, cores=args.cores, efficiency=args.efficiency, gpu_img_s=args.gpu_img_s,
                loader_img_s_per_core=args.loader_img_s_per_core, scale=scale)
    print("\n".join(stage_rows(run, p)))
    goals = {"hours": p["hours"] <= GOALS["hours"], "gb": p["gb"] <= GOALS["gb"],
             "rss_gb": p["peak_rss_gb"] <= GOALS["rss_gb"]}
    print(f"goals: <= {GOALS['hours']:g} h {'met' if goals['hours'] else 'NOT met'}, "
          f"<= {GOALS['gb']:g} GB {'met' if goals['gb'] else 'NOT met'}, "
          f"peak RSS <= {GOALS['rss_gb']:g} GB {'met' if goals['rss_gb'] else 'NOT met'}; "
          f"wall {time.perf_counter() - start:.0f} s")
    result = {"measured": run, "projection": p, "goals": goals, "lowered": changes,
              "args": {k: str(v) for k, v in vars(args).items()}, "line": projection_line(p)}
    (args.work / "projection.json").write_text(json.dumps(result, indent=1))
    print(projection_line(p))
    return result


if __name__ == "__main__":
    main()

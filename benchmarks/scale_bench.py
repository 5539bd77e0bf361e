"""Fit + predict time and peak memory of the classical pair at many classes, projected to RxRx1.

Per-image profiles (synthetic, ``--features`` columns, a weak class signal in 20 of them) at
10 / 100 / 1,139 classes x 2k / 10k / 40k images, one fold (80 % train, 20 % test), run
through ``classical.make_classifier`` exactly as a comparison does (cleaning, correlation
filter, scaling, then ``svm`` -> ``scale.OvRLinearSVM`` above 50 classes and XGBoost bounded by
``scale.bounded_xgb_params``). Each point runs in a fresh process so its peak RSS (native
allocations included) is its own.

Measuring the whole grid at 3,000 features would take hours on a 2-core machine, so points are
measured at ``--features`` (default 300) with XGBoost capped at ``--rounds`` boosting rounds, and
projected to RxRx1 (125,510 images x 3,000 features, 1,139 classes, 5 folds -> 100,408 training
rows a fold) by cost models checked on the measured points:

* svm (OvRLinearSVM): each L-BFGS iteration is two products of size rows x features x classes,
  so ``seconds = s_per_iteration x (rows x features x classes ratio) x iterations`` with the
  iteration count of the measured 1,139-class point;
* xgboost: ``seconds per tree = a + b x sampled rows x sampled columns`` fitted over the
  bounded points, times the bound's ceiling of trees (``MAX_TREES // classes`` rounds x classes;
  early stopping only lowers it);
* threads: ``--threads`` measured, projected to 16 cores at ``--efficiency`` parallel efficiency.

Usage: python benchmarks/scale_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import multiprocessing as mp
import os
import platform
import resource
import time

import numpy as np
import pandas as pd

RXRX1 = {"images": 125_510, "features": 3000, "classes": 1139, "folds": 5}
GOAL_HOURS = 2.0
#: The issue's grid (hours at 3,000 features on 2 cores): ``--grid full``.
FULL = [(k, n) for n in (2000, 10000, 40000) for k in (10, 100, 1139)]
#: What fits in about 10 minutes on 2 busy cores at 300 features; enough to fit both cost models.
DEFAULT = [(10, 2000), (100, 2000), (1139, 2000), (10, 10000), (100, 10000), (1139, 10000),
           (1139, 40000)]
QUICK = [(10, 2000), (100, 2000), (1139, 4000)]
logger = logging.getLogger("scale_bench")


def profiles(n_images: int, n_classes: int, n_features: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Per-image table: class means shifted in 20 columns, the rest noise; plates of 300 images."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_images) % n_classes
    rng.shuffle(y)
    values = rng.standard_normal((n_images, n_features), dtype=np.float32)
    centres = rng.standard_normal((n_classes, min(20, n_features)), dtype=np.float32)
    values[:, :centres.shape[1]] += 1.5 * centres[y]
    table = pd.DataFrame(values, columns=[f"Cells_Intensity_F{j}_DNA" for j in range(n_features)])
    table.insert(0, "Metadata_sample_id", [f"s{i}" for i in range(n_images)])
    table.insert(1, "Metadata_group", (np.arange(n_images) // 300).astype(str))
    return table, np.array([f"siRNA-{c:04d}" for c in y])


def _point(name: str, n_classes: int, n_images: int, n_features: int, threads: int, rounds: int,
           queue) -> None:
    """Fit + predict one model at one grid point (in a child process) and report to ``queue``."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    from sklearn.model_selection import train_test_split
    from threadpoolctl import threadpool_limits

    from cellcompare.classical import make_classifier

    table, y = profiles(n_images, n_classes, n_features)
    counts = np.unique(y, return_counts=True)[1]
    train, test = train_test_split(np.arange(n_images), test_size=0.2, random_state=0,
                                   stratify=y if counts.min() >= 2 else None)
    table, y, cut = table.iloc[np.r_[train, test]], y[np.r_[train, test]], len(train)
    params = {"n_estimators": rounds} if name == "xgboost" else {}
    est = make_classifier(name, n_jobs=threads, random_state=0, **params)
    with threadpool_limits(threads):
        t0 = time.perf_counter()
        est.fit(table.iloc[:cut], y[:cut])
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        proba = est.predict_proba(table.iloc[cut:])
        predict_s = time.perf_counter() - t0
    model = est.pipeline_.named_steps["model"]
    seen = np.isin(y[cut:], est.classes_)
    record = {"model": name, "classes": n_classes, "images": n_images, "features": n_features,
              "train_rows": cut, "estimator": type(model).__name__, "fit_s": fit_s,
              "predict_s": predict_s,
              "accuracy": float(np.mean(est.classes_[proba.argmax(1)][seen] == y[cut:][seen])),
              "kept_features": len(est.pipeline_.named_steps["select"].columns_),
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if name == "xgboost":
        record["rounds"] = int(model.booster_.get_booster().num_boosted_rounds())
        record["trees"] = record["rounds"] * (len(est.classes_) if len(est.classes_) > 2 else 1)
        record["colsample"] = float(model.colsample_bytree)
        record["subsample"] = float(model.subsample)
    else:
        record["iterations"] = int(getattr(model, "n_iter_", 0))
    queue.put(record)


def measure(name: str, n_classes: int, n_images: int, args) -> dict:
    """Run :func:`_point` in a fresh process (own peak RSS); the error text when it fails."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_point, args=(name, n_classes, n_images, args.features, args.threads,
                                            args.rounds, queue))
    proc.start()
    proc.join(args.timeout)
    if proc.is_alive():
        proc.terminate()
        return {"model": name, "classes": n_classes, "images": n_images, "error": "timeout"}
    if queue.empty():
        return {"model": name, "classes": n_classes, "images": n_images,
                "error": f"exit code {proc.exitcode}"}
    return queue.get()


def _linear_fit(x: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """``t = a + b x`` by least squares with ``a, b >= 0`` (one point: ``a = 0``)."""
    if len(np.unique(x)) < 2:
        return 0.0, float(np.mean(t / x))
    b, a = np.polyfit(x, t, 1)
    if a < 0 or b < 0:
        return 0.0, float(np.sum(t * x) / np.sum(x * x))
    return float(a), float(b)


def svm_seconds(ovr: list[dict], target: dict) -> tuple[float, dict]:
    """Fit seconds of the OvR svm at ``target`` (images, features, classes, folds) on the
    measured threads: seconds per L-BFGS iteration ``= a + b x rows x features x classes``
    fitted over ``ovr`` (records with ``train_rows``, ``features``, ``classes``, ``fit_s``,
    ``iterations``), times the iterations of the largest one. Also returns the model's terms.
    """
    train = target["images"] * (target["folds"] - 1) // target["folds"]
    size = np.array([r["train_rows"] * r["features"] * r["classes"] for r in ovr], dtype=float)
    per_iter = np.array([r["fit_s"] / max(r["iterations"], 1) for r in ovr])
    a, b = _linear_fit(size, per_iter)
    iterations = ovr[int(np.argmax(size))]["iterations"]
    per_iteration = a + b * train * target["features"] * target["classes"]
    return per_iteration * iterations, {"svm_iterations": iterations,
                                        "svm_s_per_iteration": per_iteration}


def xgboost_seconds(xgb: list[dict], target: dict) -> tuple[float, dict]:
    """Fit seconds of XGBoost at ``target`` on the measured threads: seconds per tree
    ``= a + b x sampled rows x sampled columns`` fitted over ``xgb`` (records with
    ``train_rows``, ``subsample``, ``features``, ``colsample``, ``fit_s``, ``trees``), times the
    bound's ceiling of trees at the target's classes (early stopping only lowers it).
    """
    from cellcompare.classical.scale import MANY_CLASS_XGB, MAX_TREES

    train = target["images"] * (target["folds"] - 1) // target["folds"]
    k = target["classes"]
    work = np.array([r["train_rows"] * r["subsample"] * r["features"] * r["colsample"] for r in xgb],
                    dtype=float)
    per_tree = np.array([r["fit_s"] / r["trees"] for r in xgb])
    xa, xb = _linear_fit(work, per_tree)
    trees = min(300, MAX_TREES // k) * k
    sampled = train * MANY_CLASS_XGB["subsample"] * target["features"] * MANY_CLASS_XGB["colsample_bytree"]
    return trees * (xa + xb * sampled), {"xgboost_trees": trees,
                                         "xgboost_s_per_tree": xa + xb * sampled}


def project(records: list[dict], threads: int, efficiency: float, target: dict = RXRX1) -> dict:
    """Seconds per fold and hours for the folds of the pair at ``target`` (default RxRx1), on
    16 cores: :func:`svm_seconds` over the OvRLinearSVM points and :func:`xgboost_seconds`
    over the bounded XGBoost points (module doc).
    """
    from cellcompare.classical.scale import MANY_CLASSES

    speedup = 16 / threads * efficiency
    svm_s, svm = svm_seconds([r for r in records if r.get("estimator") == "OvRLinearSVM"], target)
    xgb_s, xgb = xgboost_seconds([r for r in records if r.get("estimator") == "EarlyStoppingXGB"
                                  and r["classes"] > MANY_CLASSES], target)  # the bounded settings only
    svm_s, xgb_s = svm_s / speedup, xgb_s / speedup
    return {"train_rows": target["images"] * (target["folds"] - 1) // target["folds"],
            "svm_iterations": svm["svm_iterations"],
            "svm_s_per_iteration_2_threads": svm["svm_s_per_iteration"],
            "svm_fit_s_per_fold": svm_s, "xgboost_trees": xgb["xgboost_trees"],
            "xgboost_s_per_tree_2_threads": xgb["xgboost_s_per_tree"],
            "xgboost_fit_s_per_fold": xgb_s,
            "pair_hours_5_folds": target["folds"] * (svm_s + xgb_s) / 3600,
            "speedup_2_to_16_cores": speedup}


def width_check(threads: int, rows: int = 8000) -> dict:
    """One OvR iteration and one XGBoost tree at RxRx1's width and classes (``rows`` rows),
    scaled linearly in rows to a fold's 100,408: checks the projections' extrapolation in
    features and classes. Arrays only (no preprocessing); about 4 minutes on 2 busy cores.
    """
    from cellcompare.classical.models import build_model
    from cellcompare.classical.scale import MANY_CLASS_XGB, OvRLinearSVM

    k, d = RXRX1["classes"], RXRX1["features"]
    train = RXRX1["images"] * (RXRX1["folds"] - 1) // RXRX1["folds"]
    rng = np.random.default_rng(0)
    y = np.arange(rows) % k
    X = rng.standard_normal((rows, d), dtype=np.float32)
    svm = OvRLinearSVM(max_iter=4, validation_fraction=0.0)
    t0 = time.perf_counter()
    svm.fit(X, y)
    per_iter = (time.perf_counter() - t0) / svm.n_iter_
    xgb = build_model("xgboost", large=False, n_jobs=threads, random_state=0, n_classes=k,
                      n_estimators=2)
    t0 = time.perf_counter()
    xgb.fit(X, y)
    trees = xgb.booster_.get_booster().num_boosted_rounds() * k
    per_tree = (time.perf_counter() - t0) / trees
    fit_rows = rows * (1 - xgb.validation_fraction)  # the early-stopping split holds the rest
    return {"rows": rows, "svm_s_per_iteration": per_iter,
            "svm_s_per_iteration_at_rxrx1": per_iter * train / rows,
            "xgboost_s_per_tree": per_tree,
            "xgboost_s_per_tree_at_rxrx1": per_tree * train * (1 - xgb.validation_fraction) / fit_rows,
            "xgboost_subsample": MANY_CLASS_XGB["subsample"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="XGBoost rounds measured")
    parser.add_argument("--efficiency", type=float, default=0.6, help="parallel efficiency, 2 -> 16 cores")
    parser.add_argument("--timeout", type=float, default=240, help="seconds per point")
    parser.add_argument("--grid", choices=["quick", "default", "full"], default="default",
                        help="quick: 3 points (2 min); default: 6 points (about 10 min); full: "
                             "the issue's 9 (hours at 3,000 features)")
    parser.add_argument("--width-check", action="store_true",
                        help="also time one OvR iteration and one XGBoost tree at 3,000 features "
                             "x 1,139 classes (about 4 minutes)")
    parser.add_argument("--out", default=None, help="also write the records as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # OpenMP threads that spin while waiting make XGBoost ~8x slower on a shared machine (50
    # trees: 61 s with 2 spinning threads, 7.6 s passive, 13 s on 1 thread, load average 8)
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    start = time.perf_counter()
    records = []
    for n_classes, n_images in {"quick": QUICK, "default": DEFAULT, "full": FULL}[args.grid]:
        for name in ("svm", "xgboost"):
            if name == "xgboost" and n_images < 3 * n_classes:
                # fewer than 2 training images per class: preflight stops xgboost (early stopping)
                records.append({"model": name, "classes": n_classes, "images": n_images,
                                "error": "< 2 training images per class (preflight stops it)"})
                continue
            records.append(measure(name, n_classes, n_images, args))
            logger.info("%s", json.dumps(records[-1]))
    table = pd.DataFrame(records)
    print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"{args.threads} threads, {args.features} features, xgboost {args.rounds} rounds, "
          f"load average {os.getloadavg()[0]:.1f}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    cols = [c for c in ["model", "classes", "images", "estimator", "fit_s", "predict_s",
                        "peak_rss_mb", "accuracy", "iterations", "rounds", "error"] if c in table]
    pd.set_option("display.width", 200)
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    projection = project(records, args.threads, args.efficiency)
    print(json.dumps(projection, indent=1))
    print(f"RxRx1 projection: pair {projection['pair_hours_5_folds']:.2f} h for 5 folds on 16 cores "
          f"(goal {GOAL_HOURS} h): ratio {projection['pair_hours_5_folds'] / GOAL_HOURS:.2f}; "
          f"bench wall {time.perf_counter() - start:.0f} s")
    if args.width_check:
        projection["width_check"] = width_check(args.threads)
        print(json.dumps(projection["width_check"], indent=1))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"records": records, "projection": projection}, fh, indent=1)


if __name__ == "__main__":
    main()

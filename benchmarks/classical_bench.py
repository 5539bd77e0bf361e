"""Fit+predict time of the classical models on a synthetic per-cell table, K folds.

Full size is 100,000 cells x 1,000 features, 5 folds, 2 threads; ``--scale 0.1`` runs a tenth
of the rows (and ``--features`` changes the width). Exact RBF ``SVC`` is quadratic to cubic in
the rows and infeasible at 100k cells, so the SVM timed here is the large-table path
(``linear_svm``: calibrated ``LinearSVC``; ``--svm nystroem`` for the Nystroem RBF
approximation). The ratio printed is the pair's total time against the 10-minute goal.

Usage: python benchmarks/classical_bench.py --scale 0.1
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import time

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from cellcompare.classical import make_classifier

GOAL_SECONDS = 600.0
logger = logging.getLogger("classical_bench")


def make_cells(n_cells: int, n_features: int, *, classes: int = 4, cells_per_image: int = 50,
               seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Return a cell table where 10 features carry a weak class signal and the rest is noise."""
    rng = np.random.default_rng(seed)
    n_images = max(n_cells // cells_per_image, classes * 5)
    image_label = np.arange(n_images) % classes
    image = np.sort(rng.integers(0, n_images, n_cells))
    values = rng.standard_normal((n_cells, n_features), dtype=np.float32)
    values[:, :10] += 0.5 * image_label[image, None]
    table = pd.DataFrame(values, columns=[f"Cells_Intensity_F{j}_DNA" for j in range(n_features)])
    table["Metadata_sample_id"] = image.astype(str)
    table["Metadata_group"] = (image % 3).astype(str)
    return table, np.array([f"class{c}" for c in image_label[image]])


# Settings for wide tables: 64 histogram bins and 30% of the columns per tree.
XGB_PARAMS = {"max_bin": 64, "colsample_bytree": 0.3, "n_estimators": 200}


def run(name: str, X: pd.DataFrame, y: np.ndarray, folds: int, n_jobs: int, tune: bool) -> dict:
    """Fit and predict ``name`` on each fold; return summed seconds and mean image accuracy."""
    fit_s = predict_s = 0.0
    accs = []
    cv = StratifiedGroupKFold(folds, shuffle=True, random_state=0)
    for train, test in cv.split(X, y, X["Metadata_sample_id"]):
        est = make_classifier(name, granularity="cell", tune=tune, tune_budget=2, n_jobs=n_jobs,
                              random_state=0, large_table_rows=20000,
                              **(XGB_PARAMS if name == "xgboost" else {}))
        t0 = time.perf_counter()
        est.fit(X.iloc[train], y[train])
        t1 = time.perf_counter()
        ids, proba = est.predict_image_proba(X.iloc[test])
        predict_s += time.perf_counter() - t1
        fit_s += t1 - t0
        truth = pd.Series(y[test], index=X["Metadata_sample_id"].iloc[test]).groupby(level=0).first()
        accs.append(float(np.mean(est.classes_[proba.argmax(axis=1)] == truth.loc[ids].to_numpy())))
        logger.info("%s fold done: fit %.1f s, predict %.1f s, acc %.3f", name, t1 - t0,
                    time.perf_counter() - t1, accs[-1])
    return {"fit_s": fit_s, "predict_s": predict_s, "accuracy": float(np.mean(accs))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of 100,000 cells")
    parser.add_argument("--features", type=int, default=1000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2, help="threads (XGBoost n_jobs, BLAS)")
    parser.add_argument("--svm", choices=["linear_svm", "svm"], default="linear_svm",
                        help="svm = Nystroem RBF approximation above 20k training rows")
    parser.add_argument("--tune", action="store_true", help="2-candidate inner search per fold")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    n_cells = int(round(100_000 * args.scale))
    X, y = make_cells(n_cells, args.features)
    results = {name: run(name, X, y, args.folds, args.jobs, args.tune) for name in (args.svm, "xgboost")}
    total = sum(r["fit_s"] + r["predict_s"] for r in results.values())
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"classical_bench {when} on {platform.node()} ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, --jobs {args.jobs}): {n_cells} cells x {args.features} features, "
          f"{args.folds} folds")
    print("| model | fit s | predict s | image accuracy |\n|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['fit_s']:.1f} | {r['predict_s']:.1f} | {r['accuracy']:.3f} |")
    print(f"pair total {total:.1f} s = {total / GOAL_SECONDS:.2f} x the 10-minute goal")


if __name__ == "__main__":
    main()

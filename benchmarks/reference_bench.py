"""How to normalise an image without its plate: pooled statistics vs the mean over training plates.

On the demo's synthetic Cell Painting set (``configs/demo.yaml``: 4 classes x 12 wells, 256²,
3 plates, seed 0; minimal features), each plate in turn is held out, the demo's two classical
models (xgboost; svm with ``mi_top_k: 20``) are fitted with ``normalize: plate_robust`` on the
other two, and the held-out plate's sites are scored three ways:

* ``own plate``: normalised by the held-out plate's own median/MAD (what comparison does for a
  test plate, and serve for a whole-plate batch);
* ``pooled``: one median/MAD of all training rows (``TableScaler.center_``/``scale_``);
* ``mean over plates``: by each training plate's statistics in turn, probabilities averaged
  (``TableClassifier.predict_reference_proba``, what serve does for a lone image).

Prints accuracy per held-out plate and the mean. Usage: python benchmarks/reference_bench.py
"""

from __future__ import annotations

import datetime
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from cellcompare import classical
from cellcompare.classical.inputs import sample_features
from cellcompare.datasets import open_dataset
from cellcompare.datasets.synth import make_cellpainting
from cellcompare.features import FeatureConfig

MODELS = {"xgboost": {}, "svm": {"mi_top_k": 20}}


def main() -> int:
    print(f"# reference_bench {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        data = make_cellpainting(Path(tmp) / "d", classes=4, per_class=12, size=256, plates=3, seed=0)
        ds = open_dataset(data, layout="rxrx1")
        cfg = FeatureConfig(preset="minimal", dna_channel="DNA", cyto_channel="Actin", qc_samples=0)
        table = pd.concat([sample_features(ds[i], cfg, channel_names=ds.channel_names,
                                           image_number=i + 1) for i in range(len(ds))],
                          ignore_index=True)
    y = table["Metadata_label"].to_numpy()
    plates = table["Metadata_group"].astype(str).to_numpy()
    print("| model | normalised by | " + " | ".join(f"held out {p}" for p in np.unique(plates))
          + " | mean |")
    print("|---|---|" + "---|" * (len(np.unique(plates)) + 1))
    for name, params in MODELS.items():
        scores: dict[str, list[float]] = {"own plate": [], "pooled": [], "mean over plates": []}
        for held in np.unique(plates):
            train = plates != held
            est = classical.make_classifier(name, normalize="plate_robust", **params)
            est.fit(table[train], y[train])
            test, truth = table[~train], y[~train]

            def accuracy(proba: np.ndarray) -> float:
                return float((est.classes_[proba.argmax(axis=1)] == truth).mean())

            scaler = est.pipeline_.named_steps["scale"]
            scores["own plate"].append(accuracy(est.predict_proba(test)))
            scaler.unseen_groups = "global"        # an unseen plate by the pooled statistics
            scores["pooled"].append(accuracy(est.predict_proba(test)))
            scaler.unseen_groups = "self"
            scores["mean over plates"].append(accuracy(est.predict_reference_proba(test)))
        for how, values in scores.items():
            print(f"| {name} | {how} | " + " | ".join(f"{v:.3f}" for v in values)
                  + f" | {np.mean(values):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

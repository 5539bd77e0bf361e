"""A server holds only its model family's libraries: a classical model's never imports torch,
a deep model's never imports xgboost (checked in a fresh interpreter after a prediction)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cellcompare import serve
from tests.test_serve_offline import disk_image, train_classical

ROOT = Path(__file__).resolve().parents[1]
#: Builds the ``cellcompare`` command line (as ``cellcompare serve`` does), serves one
#: prediction in-process and prints which heavy libraries were imported.
PROBE = """
import io, json, sys
import numpy as np, tifffile
from fastapi.testclient import TestClient
from cellcompare.cli import build_parser
from cellcompare.serve.app import create_app
build_parser()
image = np.load(sys.argv[2])
buf = io.BytesIO(); tifffile.imwrite(buf, image)
with TestClient(create_app(sys.argv[1])) as client:
    answer = client.post("/predict", files={"file": ("x.tif", buf.getvalue())})
    assert answer.status_code == 200, answer.text
print(json.dumps({m: m in sys.modules for m in ("torch", "xgboost", "matplotlib", "seaborn")}))
"""


def imported_after_prediction(model: Path, image: np.ndarray, tmp_path: Path) -> dict[str, bool]:
    np.save(tmp_path / "image.npy", image)
    done = subprocess.run([sys.executable, "-c", PROBE, str(model), str(tmp_path / "image.npy")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["svm", "xgboost"])
def test_classical_server_never_imports_torch(name, tmp_path):
    model = train_classical(tmp_path / "m", model=name)
    imported = imported_after_prediction(model, disk_image(20, 1), tmp_path)
    assert imported == {"torch": False, "xgboost": name == "xgboost", "matplotlib": False,
                        "seaborn": False}


def test_deep_server_never_imports_xgboost(tmp_path):
    from cellcompare.deep import DeepClassifier, DeepConfig

    images = [disk_image(20 if i % 2 else 8, i).astype(np.float32) / 65535 for i in range(4)]
    clf = DeepClassifier(DeepConfig(arch="smallcnn", weights="none", image_size=16, epochs=1,
                                    batch_size=4, val_fraction=0.0, device="cpu", amp=False,
                                    progress=False))
    clf.fit(images, ["small", "big", "small", "big"])
    model = serve.export_model(clf, tmp_path / "m", channels=["Gray"], dtype="uint16")
    imported = imported_after_prediction(model, disk_image(20, 9), tmp_path)
    assert imported["torch"] and not imported["xgboost"] and not imported["matplotlib"]

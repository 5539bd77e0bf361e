"""Classical heads on embeddings (``representation: embeddings:<source>``): same folds, tables
under the feature contract, and the configuration errors."""

import json
from html import escape as html_escape

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

from cellcompare.comparison import load_config, run
from cellcompare.comparison.config import CompareConfig, ConfigError, ModelSpec
from cellcompare.config import UnknownKeyError
from cellcompare.deep.models import file_sha256
from cellcompare.features import load_table


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A resnet18 state dict named as torchvision names its files (``name-<sha256 prefix>.pth``).

    Seeded random weights: ImageNet's cannot be downloaded here; the file goes through the
    same weights API (name, checksum, load) as ImageNet's would.
    """
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights")
    raw = folder / "raw.pth"
    torch.save(torchvision.models.resnet18().state_dict(), raw)
    path = folder / f"resnet18-{file_sha256(raw)[:8]}.pth"
    raw.rename(path)
    return path


def _config(tmp_path, models, **extra):
    config = {"dataset": {"path": str(tmp_path / "data"), "layout": "rxrx1",
                          "synth": {"classes": 3, "per_class": 6, "size": 96, "plates": 3}},
              "features": {"preset": "minimal", "dna_channel": "DNA", "cyto_channel": "Actin"},
              "models": models, "folds": {"n_splits": 3}, "top_k": 2, "seed": 0,
              "output": str(tmp_path / "results"), "report": False, **extra}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config))
    return load_config(path)


def test_svm_on_imagenet_embeddings_runs_on_the_same_folds_with_tables_as_features(tmp_path, weights_file):
    emb = {"weights": str(weights_file), "cells_per_image": 8}
    config = _config(tmp_path, [{"name": "svm"},
                                {"name": "svm", "label": "svm_emb", "representation": "embeddings:imagenet",
                                 "embedding": emb},
                                {"name": "smallcnn", "params": {"weights": "none", "epochs": 1,
                                                                "image_size": 32, "progress": False}}],
                     report=True, embed_models=["smallcnn"], export_models=["svm_emb"])
    out = run(config)
    metrics = json.loads((out / "metrics.json").read_text())
    # the 2x2: representation with the head held classical, head with the representation learned
    factors = metrics["factors"]
    assert factors["cells"]["cellprofiler/classical"]["best"] == "svm"
    assert factors["cells"]["learned/classical"]["best"] == "svm_emb"
    assert factors["cells"]["learned/network"]["best"] == "smallcnn"
    assert factors["cells"]["cellprofiler/network"]["best"] is None
    rep, head = factors["factors"]["representation"], factors["factors"]["head"]
    assert (rep["model_a"], rep["model_b"], head["model_a"], head["model_b"]) == (
        "svm_emb", "svm", "smallcnn", "svm_emb")
    boot = metrics["bootstrap"]["models"]
    assert rep["estimate"] == pytest.approx(boot["svm_emb"]["accuracy"]["estimate"]
                                            - boot["svm"]["accuracy"]["estimate"])
    assert rep["low"] <= rep["estimate"] <= rep["high"] and 0 <= rep["t_test_p"] <= 1
    # the fine-tuned network of each fold embedded that fold's test images: one row per image
    tuned = load_table(out / "embeddings" / "finetuned-smallcnn", "image")
    folds = pd.read_csv(out / "folds.csv").set_index("sample_id")
    assert sorted(tuned.Metadata_sample_id) == sorted(folds.index)
    assert (tuned.set_index("Metadata_sample_id").Metadata_fold == folds.fold.loc[tuned.Metadata_sample_id]).all()
    assert len([c for c in tuned.columns if c.startswith("Embedding_finetuned_")]) == 256
    assert metrics["embeddings"] == {"smallcnn": str(out / "embeddings" / "finetuned-smallcnn")}
    html = (out / "report.html").read_text()
    assert 'id="factor-grid"' in html and "not run: no network is trained on CellProfiler features" in html
    assert html_escape(factors["answer"].split(":")[0]).replace("&#x27;", "&#39;") in html
    entry = metrics["models"]["svm_emb"]
    assert entry["representation"] == "embeddings:imagenet"
    assert metrics["models"]["svm"]["representation"] == "cellprofiler"
    assert entry["embedding"]["dim"] == 512 and entry["embedding"]["input"] == "cells"
    assert entry["weights"]["sha256"] == file_sha256(weights_file)
    assert entry["weights"]["source"] == "path"
    preds = pd.read_parquet(out / "predictions.parquet")
    by_model = {m: p.sort_values("sample_id")[["sample_id", "fold"]].to_numpy().tolist()
                for m, p in preds.groupby("model")}
    assert by_model["svm"] == by_model["svm_emb"]                    # identical folds
    proba = preds[preds.model == "svm_emb"].filter(like="proba_").to_numpy()
    assert np.allclose(proba.sum(1), 1.0)
    # the tables: Metadata_* columns and the ids of the features, shards read by load_table
    (folder,) = (out / "embeddings").glob("imagenet-*")
    image, cells = load_table(folder, "image"), load_table(folder, "cell")
    features = load_table(out / "features", "image")
    assert sorted(image.Metadata_sample_id) == sorted(features.Metadata_sample_id)
    assert {"Metadata_Plate", "Metadata_label", "Metadata_group", "Metadata_ImageNumber"} <= set(image.columns)
    columns = [c for c in image.columns if c.startswith("Embedding_imagenet_")]
    assert len(columns) == 512 and image[columns].dtypes.eq(np.float32).all()
    assert cells.groupby("Metadata_sample_id").size().max() <= 8
    first = image.iloc[0]
    mine = cells[cells.Metadata_sample_id == first.Metadata_sample_id]
    assert first.Metadata_Object_Count == len(mine)
    np.testing.assert_allclose(first[columns].to_numpy(float), mine[columns].mean().to_numpy(), rtol=1e-5)
    # pycytominer aggregates the cell table into the image table
    from pycytominer import aggregate

    agg = aggregate(cells, strata=["Metadata_sample_id"], features=columns, operation="mean")
    agg = agg.set_index("Metadata_sample_id").loc[image.Metadata_sample_id]
    np.testing.assert_allclose(agg[columns].to_numpy(float), image[columns].to_numpy(float), rtol=1e-5)
    # served, the exported head embeds each image as comparison did: the same probabilities
    from cellcompare import serve
    from cellcompare.classical import load_model
    from cellcompare.datasets import open_dataset

    model_dir = out / "models" / "svm_emb"
    assert json.loads((model_dir / "serve.json").read_text())["embedding"]["cells_per_image"] == 8
    ds = open_dataset(tmp_path / "data", layout="rxrx1")
    ids = [str(s) for s in ds.ids[:6]]
    classes, served = serve.load_predictor(model_dir).predict_proba([ds.get(s) for s in ids])
    head = load_model(model_dir / "model")
    rows = image.set_index("Metadata_sample_id").loc[ids].reset_index()
    expected = head.predict_proba(rows)
    order = [list(head.classes_).index(c) for c in classes]
    np.testing.assert_allclose(served, expected[:, order], atol=1e-4)
    # a rerun reads the cached tables and the finished units
    stamp = (folder / "embedding.json").stat().st_mtime_ns
    run(config)
    assert (folder / "embedding.json").stat().st_mtime_ns == stamp
    assert json.loads((out / "metrics.json").read_text())["models"]["svm_emb"]["summary"] == entry["summary"]


def test_a_network_given_a_representation_is_refused():
    with pytest.raises(ConfigError, match="learns its own representation"):
        ModelSpec.from_dict({"name": "smallcnn", "params": {"weights": "none"},
                             "representation": "embeddings:ssl"}, "models[2]")


def test_finetuned_embeddings_cannot_train_a_classical_head():
    with pytest.raises(ConfigError, match="test images only"):
        ModelSpec.from_dict({"name": "svm", "representation": "embeddings:finetuned"})


def test_unknown_representation_and_embedding_keys_are_named(tmp_path):
    with pytest.raises(ConfigError, match="models\\[0\\].representation must be one of"):
        ModelSpec.from_dict({"name": "svm", "representation": "embedding:ssl"}, "models[0]")
    with pytest.raises(UnknownKeyError, match="models\\[0\\].embedding.cells_per_imag"):
        ModelSpec.from_dict({"name": "svm", "representation": "embeddings:ssl",
                             "embedding": {"cells_per_imag": 4}}, "models[0]")
    with pytest.raises(ConfigError, match="representation is cellprofiler"):
        ModelSpec.from_dict({"name": "svm", "embedding": {"input": "image"}}, "models[0]")


def test_imagenet_embeddings_need_a_weights_file_that_exists(tmp_path):
    from cellcompare.deep import WeightsUnavailableError

    missing = tmp_path / "resnet18-f37072fd.pth"
    with pytest.raises(WeightsUnavailableError, match=str(missing)):
        ModelSpec.from_dict({"name": "svm", "representation": "embeddings:imagenet",
                             "embedding": {"weights": str(missing)}})
    with pytest.raises(ConfigError, match="needs real weights"):
        ModelSpec.from_dict({"name": "svm", "representation": "embeddings:imagenet",
                             "embedding": {"weights": "none"}})


def test_only_networks_are_embedded_by_fold():
    with pytest.raises(ConfigError, match="embed_models: \\['svm'\\] name no deep model"):
        CompareConfig(models=(ModelSpec("svm", "svm"), ModelSpec("smallcnn", "smallcnn")),
                      embed_models=("svm",))




def test_embed_command_writes_tables_with_the_metadata_of_the_features(tmp_path, weights_file):
    from cellcompare.cli import main
    from cellcompare.features import FeatureConfig, run_extraction

    data = tmp_path / "data"
    assert main(["synth", "--kind", "cellpainting", "--out", str(data), "--classes", "2",
                 "--per-class", "3", "--size", "96", "--plates", "2"]) == 0
    out = tmp_path / "emb"
    assert main(["embed", str(data), "--out", str(out), "--weights", str(weights_file),
                 "--cells-per-image", "4", "--image-size", "32"]) == 0
    record = json.loads((out / "embedding.json").read_text())
    assert record["dim"] == 512 and record["images"] == 6 and record["image_size"] == 32
    assert record["weights"]["sha256"] == file_sha256(weights_file)
    image, cells = load_table(out, "image"), load_table(out, "cell")
    assert 6 <= len(cells) <= 24 and cells.groupby("Metadata_sample_id").size().max() <= 4
    extracted = load_table(run_extraction(data, tmp_path / "features", FeatureConfig(preset="minimal")), "image")
    keys = ["Metadata_ImageNumber", "Metadata_sample_id", "Metadata_label", "Metadata_group",
            "Metadata_Plate", "Metadata_Well"]
    pd.testing.assert_frame_equal(image[keys].reset_index(drop=True),
                                  extracted[keys].reset_index(drop=True), check_dtype=False)
    with pytest.raises(SystemExit):
        main(["embed", str(data), "--out", str(out), "--source", "finetuned"])


def test_ssl_network_and_svm_on_its_embeddings_share_one_backbone_per_fold(tmp_path):
    ssl = {"epochs": 2, "batch_size": 32}
    crops = {"image_size": 32, "cells_per_image": 8, "normalize": "group"}
    config = _config(tmp_path, [
        {"name": "svm", "label": "svm_ssl", "representation": "embeddings:ssl",
         "embedding": {**crops, "arch": "smallcnn", "batch_size": 32, "ssl": ssl}},
        {"name": "smallcnn", "label": "cnn_ssl", "granularity": "cell",
         "params": {**crops, "weights": "ssl", "epochs": 1, "batch_size": 32, "val_fraction": 0.0,
                    "amp": False, "progress": False, "ssl": ssl}}], report=True)
    out = run(config)
    metrics = json.loads((out / "metrics.json").read_text())
    backbones = sorted((out / "ssl").iterdir())
    assert len(backbones) == 3                       # one per fold, pretrained once for both
    cnn, head = metrics["models"]["cnn_ssl"], metrics["models"]["svm_ssl"]
    for fold_cnn, fold_head in zip(cnn["folds"], head["folds"]):
        assert fold_cnn["weights"]["sha256"] == fold_head["weights"]["sha256"]
        assert fold_cnn["weights"]["source"] == "ssl" and fold_cnn["weights"]["use_test_images"] is False
    train_images = cnn["folds"][0]["n_train"]
    assert train_images < cnn["folds"][0]["weights"]["images"] <= train_images * 8  # <= 8 crops an image
    assert head["embedding"]["source"] == "ssl" and head["embedding"]["dim"] == 256
    html = (out / "report.html").read_text()
    assert "self-supervised (SimCLR, 2 epochs) on this fold&#39;s training images only" in html

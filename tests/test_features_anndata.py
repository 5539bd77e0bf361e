"""AnnData export of the profiles, read back by anndata and by pycytominer's reader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

anndata = pytest.importorskip("anndata", reason="anndata is in requirements.txt; not installed here")

from cellcompare.cli import main  # noqa: E402
from cellcompare.datasets.synth import make_cellpainting  # noqa: E402
from cellcompare.features import FeatureConfig, load_table, run_extraction  # noqa: E402


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A comparison-shaped folder: ``features/`` of a tiny extraction and ``predictions.parquet``."""
    root = tmp_path_factory.mktemp("export")
    data = make_cellpainting(root / "data", classes=2, per_class=2, size=64, plates=2, seed=3)
    config = FeatureConfig.from_dict({"preset": "minimal", "dna_channel": "DNA", "cyto_channel": "Actin"})
    run_extraction(data, root / "results" / "features", config, jobs=1)
    images = load_table(root / "results" / "features", "image")
    ids = images["Metadata_sample_id"].tolist()
    rng = np.random.default_rng(0)
    p = rng.random(len(ids))
    rows = [{"sample_id": s, "fold": 0, "model": m, "true_label": "x",
             "proba_siRNA_0001": q if m == "svm" else 1 - q, "proba_siRNA_0002": 1 - q if m == "svm" else q}
            for m in ("svm", "resnet18") for s, q in zip(ids, p)]
    pd.DataFrame(rows).to_parquet(root / "results" / "predictions.parquet")
    return root / "results", pd.DataFrame(rows)


def _features(table):
    return [c for c in table.columns if not c.startswith("Metadata_")]


def test_export_writes_image_and_cell_h5ad_read_back_by_pycytominer(results):
    from pycytominer.cyto_utils.load import load_profiles

    folder, _ = results
    assert main(["export", str(folder), "--to", "anndata"]) == 0
    for level, name in (("image", "image.h5ad"), ("cell", "cell.h5ad")):
        table = load_table(folder / "features", level)
        adata = anndata.read_h5ad(folder / "anndata" / name)
        assert adata.X.dtype == np.float32 and adata.shape == (len(table), len(_features(table)))
        assert list(adata.var_names) == _features(table)
        assert set(adata.obs.columns) == {c for c in table.columns if c.startswith("Metadata_")}
        np.testing.assert_array_equal(adata.X, table[_features(table)].to_numpy(np.float32))
        back = load_profiles(folder / "anndata" / name)
        assert len(back) == len(table) and list(back["Metadata_sample_id"]) == list(table["Metadata_sample_id"])
        np.testing.assert_array_equal(back[_features(table)].to_numpy(np.float32),
                                      table[_features(table)].to_numpy(np.float32))
        assert list(back["Metadata_Well"].astype(str)) == list(table["Metadata_Well"].astype(str))


def test_predictions_go_into_obs_when_asked(results, tmp_path):
    folder, predictions = results
    assert main(["export", str(folder), "--out", str(tmp_path), "--level", "image", "--format",
                 "zarr", "--predictions"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.zarr"]
    adata = anndata.read_zarr(tmp_path / "image.zarr")
    svm = predictions[predictions.model == "svm"].set_index("sample_id")
    obs = adata.obs.set_index("Metadata_sample_id")
    expected = np.where(svm["proba_siRNA_0001"] >= svm["proba_siRNA_0002"], "siRNA_0001", "siRNA_0002")
    assert list(obs.loc[svm.index, "Metadata_Prediction_svm"]) == list(expected)
    np.testing.assert_allclose(obs.loc[svm.index, "Metadata_Proba_resnet18_siRNA_0001"],
                               1 - svm["proba_siRNA_0001"])
    assert not any(c.startswith("Metadata_") for c in adata.var_names)


def test_export_of_a_folder_without_features_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"neither a comparison's results"):
        from cellcompare.features.anndata import export_anndata
        export_anndata(tmp_path)

"""Classical fits on a Dask LocalCluster give the numbers of a local run, config unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedKFold

from cellcompare.classical import ClassicalConfig
from cellcompare.classical.cluster import fit_splits

distributed = pytest.importorskip("distributed")


def _table(seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat(["a", "b", "c"], 20)
    values = rng.normal(size=(len(y), 3))
    values[:, :2] += 4.0 * (y == "b")[:, None] - 4.0 * (y == "c")[:, None]
    table = pd.DataFrame(values, columns=[f"Cells_F{i}" for i in range(3)])
    table.insert(0, "Metadata_sample_id", [f"s{i}" for i in range(len(y))])
    splits = list(StratifiedKFold(3, shuffle=True, random_state=0).split(values, y))
    return table, y, splits


@pytest.mark.parametrize("yaml_text", [
    "name: svm\n",
    "name: xgboost\nparams: {n_estimators: 20, max_depth: 2}\n",
])
def test_local_cluster_matches_a_local_run(tmp_path, yaml_text):
    path = tmp_path / "model.yaml"
    path.write_text(yaml_text)
    config = ClassicalConfig.from_yaml(path)  # the same file a comparison reads
    table, y, splits = _table()
    local = fit_splits(config, table, y, splits, backend="sequential")
    with (distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                   dashboard_address=None) as cluster,
          distributed.Client(cluster) as client, distributed.get_task_stream(client) as stream):
        remote = fit_splits(config, table, y, splits, backend="dask")
        addresses = set(client.scheduler_info()["workers"])
    ran_on = {task["worker"] for task in stream.data}
    assert len(stream.data) >= len(splits) and ran_on and ran_on <= addresses  # on the cluster
    for (_, a), (est, b), (_, test) in zip(local, remote, splits):
        np.testing.assert_array_equal(a, b)
        assert a.shape == (len(test), 3)
        assert list(est.classes_) == ["a", "b", "c"]
    accuracy = np.mean([np.mean(est.classes_[p.argmax(1)] == y[test])
                        for (est, p), (_, test) in zip(remote, splits)])
    assert accuracy > 0.8


def test_unknown_backend_is_refused():
    table, y, splits = _table()
    with pytest.raises(ValueError, match="backend must be one of"):
        fit_splits(ClassicalConfig(), table, y, splits, backend="spark")

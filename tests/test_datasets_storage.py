"""Dataset roots on S3, against moto's S3-compatible server on 127.0.0.1 (no real network)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cellcompare.datasets import open_dataset
from cellcompare.datasets.storage import StagedRoot, StorageError, _semaphore, is_url
from cellcompare.datasets.synth import make_cellpainting
from cellcompare.features import FeatureConfig, load_table, run_extraction

moto_server = pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")
boto3 = pytest.importorskip("boto3")

BUCKET = "screens"
#: Safety net only: how long a transfer waits for its pair before the test fails saying so.
SAFETY_S = 60


@pytest.fixture(scope="module")
def s3():
    """An S3 endpoint on 127.0.0.1 with one bucket; yields the fsspec storage options."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield {"key": "testing", "secret": "testing",
           "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    server.stop()


@pytest.fixture(scope="module")
def remote_rxrx1(s3, tmp_path_factory):
    """A small RxRx1-layout dataset, written locally and uploaded to s3://screens/cp."""
    local = make_cellpainting(tmp_path_factory.mktemp("local") / "cp", classes=2, per_class=2,
                              size=48, plates=1, seed=2)
    fs = s3fs.S3FileSystem(**s3)
    fs.put(str(local) + "/", f"{BUCKET}/cp", recursive=True)
    return local, f"s3://{BUCKET}/cp"


def _open(url, s3, cache, **kwargs):
    return open_dataset(url, storage_options=s3, cache_dir=str(cache), **kwargs)


def test_is_url():
    assert is_url("s3://b/p") and is_url("gs://b") and not is_url("/data/cp") and not is_url(Path("x"))


def test_s3_root_opens_without_fetching_images_and_reads_the_same_pixels(s3, remote_rxrx1, tmp_path):
    local, url = remote_rxrx1
    ds = _open(url, s3, tmp_path)
    expected = open_dataset(local)
    assert ds.layout == "rxrx1" and ds.source_url == url
    assert list(ds.ids) == list(expected.ids) and list(ds.labels) == list(expected.labels)
    fetched = tmp_path.glob("remote/*/fetched/**/*.png")
    assert [p for p in fetched if p.is_file()] == []  # nothing but metadata.csv transferred yet
    np.testing.assert_array_equal(ds[1].image, expected[1].image)
    markers = [p for p in tmp_path.glob("remote/*/fetched/**/*.png") if p.is_file()]
    assert len(markers) == 6  # the six channel files of that one site
    assert ds.channel_names == expected.channel_names


def test_reopening_reuses_fetched_files(s3, remote_rxrx1, tmp_path):
    _, url = remote_rxrx1
    first = _open(url, s3, tmp_path)
    first[0]
    again = _open(url, s3, tmp_path)
    assert again.fetch.fetch(again.paths_of(0)) == 0
    assert again.fetch.fetch(again.paths_of(2)) == 6


def test_fetches_run_concurrently_but_bounded(s3, remote_rxrx1, tmp_path, monkeypatch):
    """The six files of a site come two at a time: each pair of transfers meets inside the
    transfer (so two do run at once) and, while both are there, no third slot is free."""
    _, url = remote_rxrx1
    ds = _open(url, s3, tmp_path, max_concurrency=2)
    staged = ds.fetch
    slots = _semaphore(staged.url, 2)          # the bound shared by every reader of this root
    # two parties: a transfer waits for a second to arrive, and neither leaves before the check
    arrived, checked = threading.Barrier(2, timeout=SAFETY_S), threading.Barrier(2, timeout=SAFETY_S)
    lock, state = threading.Lock(), {"now": 0, "peak": 0, "pairs": 0, "third_slot": []}
    original = staged.fs.get_file

    def paired_get(*args, **kwargs):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        try:
            if arrived.wait() == 0:             # one of the two, while both are inside
                free = slots.acquire(blocking=False)
                if free:
                    slots.release()
                state["third_slot"].append(free)
                state["pairs"] += 1
            checked.wait()
            return original(*args, **kwargs)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(staged.fs, "get_file", paired_get)   # fsspec shares this filesystem object
    assert staged.fetch(ds.paths_of(3)) == 6
    assert state["pairs"] == 3 and state["third_slot"] == [False] * 3
    assert state["peak"] == 2


def test_changed_remote_file_is_fetched_again(s3, remote_rxrx1, tmp_path):
    local, _ = remote_rxrx1
    fs = s3fs.S3FileSystem(**s3)
    fs.put(str(local) + "/", f"{BUCKET}/cp2", recursive=True)
    url = f"s3://{BUCKET}/cp2"
    ds = _open(url, s3, tmp_path)
    before = ds[0].image
    name = Path(ds.paths_of(0)[0]).relative_to(ds.root).as_posix()
    replacement = local / "images" / "HEPG2-01" / "Plate1" / Path(ds.paths_of(1)[0]).name
    fs.put(str(replacement), f"{BUCKET}/cp2/{name}")
    fs.invalidate_cache()
    changed = _open(url, s3, tmp_path)
    after = changed[0].image
    assert not np.array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[0], open_dataset(local)[1].image[0])


def test_missing_prefix_raises_storage_error(s3, tmp_path):
    with pytest.raises(StorageError, match=f"s3://{BUCKET}/absent"):
        _open(f"s3://{BUCKET}/absent", s3, tmp_path)


def test_feature_extraction_reads_an_s3_root(s3, remote_rxrx1, tmp_path):
    local, url = remote_rxrx1
    config = FeatureConfig.from_dict({"preset": "minimal", "dna_channel": "DNA", "cyto_channel": "Actin"})
    options = {"layout": "rxrx1", "storage_options": s3, "cache_dir": str(tmp_path / "cache")}
    run_extraction(url, tmp_path / "remote", config, dataset_options=options)
    run_extraction(local, tmp_path / "local", config, dataset_options={"layout": "rxrx1"})
    remote, reference = load_table(tmp_path / "remote"), load_table(tmp_path / "local")
    assert len(remote) == 4 and list(remote.Metadata_sample_id) == list(reference.Metadata_sample_id)
    feats = [c for c in reference.columns if not c.startswith("Metadata_")]
    np.testing.assert_allclose(remote[feats].to_numpy(float), reference[feats].to_numpy(float),
                               equal_nan=True)


def test_loaddata_pathnames_on_the_same_bucket_are_read_from_the_mirror(s3, remote_rxrx1, tmp_path):
    local, url = remote_rxrx1
    meta = pd.read_csv(local / "metadata.csv")
    rows = [{"FileName_DNA": f"{r.well}_s{r.site}_w1.png", "FileName_RNA": f"{r.well}_s{r.site}_w4.png",
             "PathName_DNA": f"{url}/images/{r.experiment}/Plate{r.plate}",
             "PathName_RNA": f"{url}/images/{r.experiment}/Plate{r.plate}",
             "Metadata_Plate": str(r.plate), "Metadata_Well": r.well, "Metadata_Site": str(r.site),
             "Metadata_sirna": r.sirna} for r in meta.itertuples()]
    fs = s3fs.S3FileSystem(**s3)
    fs.pipe(f"{BUCKET}/cp/load_data.csv", pd.DataFrame(rows).to_csv(index=False).encode())
    try:
        ds = _open(url, s3, tmp_path, layout="loaddata", label_column="Metadata_sirna")
        assert len(ds) == 4 and ds.channel_names == ("DNA", "RNA")
        reference = open_dataset(local)
        np.testing.assert_array_equal(ds[0].image, reference[0].image[[0, 3]])
    finally:
        fs.rm(f"{BUCKET}/cp/load_data.csv")


def test_staged_root_refuses_zero_concurrency(tmp_path):
    with pytest.raises(ValueError, match="max_concurrency"):
        StagedRoot("memory://x", cache_dir=tmp_path, max_concurrency=0)

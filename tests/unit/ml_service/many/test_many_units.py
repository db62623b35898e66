"""Many-models pieces on their own: dataset, chunks, checks, set integrity, engines."""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest

from ml_service.errors import MlopsError, UsageError
from ml_service.many import checks
from ml_service.many import dataset as ds
from ml_service.sets import Entry, ModelSet, write_set
from ml_service.many.engines import JoblibEngine, engine_from_env
from ml_service.many.work import chunk_shards
from sales_forecast.generate import partition, write
from sales_forecast.schema import CONTRACT

KEYS = ("store", "product")


def test_shards_are_listed_in_numeric_order_and_read_with_their_key(tmp_path):
    write(tmp_path / "data", 11, 2, 5)
    shards = ds.list_shards(str(tmp_path / "data"), KEYS)
    assert [s.value for s in shards] == [str(v) for v in range(1, 12)]
    frame = ds.read_shard(shards[9])
    assert list(frame.columns)[:2] == ["store", "product"] and set(frame["store"]) == {10}
    assert len(frame) == 10


def test_a_missing_or_unpartitioned_dataset_says_what_is_expected(tmp_path):
    with pytest.raises(UsageError, match="no dataset at"):
        ds.list_shards(str(tmp_path / "none"), KEYS)
    (tmp_path / "flat").mkdir()
    with pytest.raises(UsageError, match="holds no 'store=<value>' directories"):
        ds.list_shards(str(tmp_path / "flat"), KEYS)


def test_partition_keys_are_stable_strings():
    assert ds.partition_key(KEYS, (np.int64(3), 7.0)) == "store=3/product=7"
    assert ds.partition_key(("region",), ("north",)) == "region=north"


def test_the_holdout_depends_on_row_content_only():
    rows = partition(1, 1, 200)
    mask = ds.holdout_mask(rows, 0.2, CONTRACT)
    assert 0.1 < mask.mean() < 0.3
    shuffled = rows.sample(frac=1, random_state=0)
    again = ds.holdout_mask(shuffled, 0.2, CONTRACT)
    assert (pd.Series(again, index=shuffled.index).sort_index().to_numpy() == mask).all()


@pytest.mark.parametrize(("shards", "workers", "per_worker", "sizes"), [
    (10, 2, 2, [3, 3, 2, 2]),
    (3, 2, 4, [1, 1, 1]),
    (1, 8, 4, [1]),
])
def test_chunks_cover_every_shard_once(shards, workers, per_worker, sizes):
    items = [ds.Shard("r", "store", str(i)) for i in range(shards)]
    chunks = chunk_shards(items, workers, per_worker)
    assert [len(c) for c in chunks] == sizes
    assert [s for c in chunks for s in c] == items


def test_checks_name_what_breaks_the_contract():
    rows = partition(1, 1, 30).astype({"promotion": float})
    assert checks.partition_problems(rows, CONTRACT) == []
    assert not checks.bad_rows(rows, CONTRACT).any()
    rows.loc[0, "price"] = -1.0
    rows.loc[1, "promotion"] = 0.5
    rows.loc[2, "temperature"] = np.nan
    assert checks.bad_rows(rows, CONTRACT)[:4].tolist() == [True, True, True, False]
    assert checks.partition_problems(rows, CONTRACT) == [
        "price: 1 values outside [0.01, 1000]",
        "promotion: 1 values not in [0.0, 1.0]",
        "temperature: 1 missing values",
    ]
    assert checks.partition_problems(rows.head(5), CONTRACT)[0] == \
        "5 rows, fewer than the contract's 20"
    unscored = rows.assign(sales=np.nan)  # rows to score have no target yet
    assert not checks.bad_rows(unscored, CONTRACT, target=False)[3]
    assert checks.bad_rows(unscored, CONTRACT)[3]


def _set(tmp_path):
    entries = [Entry(f"store=1/product={p}", "new", "first model", 0, 10, "k", {"wape": 0.1},
                     pickle.dumps({"model": p})) for p in (1, 2)]
    write_set(tmp_path / "set", entries, {"partition_keys": list(KEYS)})
    return tmp_path / "set"


def test_a_set_loads_each_model_by_key_and_its_source_version(tmp_path):
    models = ModelSet(_set(tmp_path), version=4)
    assert models.keys == ["store=1/product=1", "store=1/product=2"]
    assert models.load("store=1/product=2") == {"model": 2}
    assert models.source_version("store=1/product=1") == 4 and models.metrics(
        "store=1/product=1") == {"wape": 0.1}
    with pytest.raises(UsageError, match="no model for partition store=9/product=1"):
        models.model_bytes("store=9/product=1")


def test_a_tampered_set_is_refused_before_anything_is_unpickled(tmp_path):
    directory = _set(tmp_path)
    with zipfile.ZipFile(directory / "models.zip", "a") as archive:
        archive.writestr("store=1/product=3.pkl", b"not what the index says")
    with pytest.raises(MlopsError, match="models.zip does not match the sha256 of its metadata"):
        ModelSet(directory)


def test_an_entry_that_does_not_match_the_index_is_refused(tmp_path):
    import pandas as pd

    from ml_service.bundle import sha256_file

    # An index rewritten with its metadata, but the archive's entry left as it was.
    directory = _set(tmp_path)
    index = pd.read_parquet(directory / "index.parquet")
    index.loc[index["key"] == "store=1/product=1", "sha256"] = hashlib.sha256(b"x").hexdigest()
    index.to_parquet(directory / "index.parquet", index=False)
    metadata = json.loads((directory / "metadata.json").read_text())
    metadata["index_sha256"] = sha256_file(directory / "index.parquet")
    (directory / "metadata.json").write_text(json.dumps(metadata))
    models = ModelSet(directory)
    assert models.load("store=1/product=2") == {"model": 2}
    with pytest.raises(MlopsError, match="does not match the set's index"):
        models.load("store=1/product=1")


def test_the_engine_is_joblib_unless_ray_is_asked_for():
    assert isinstance(engine_from_env({}), JoblibEngine)
    assert engine_from_env({"MLOPS_MANY_JOBS": "3"}).workers == 3
    with pytest.raises(UsageError, match="MLOPS_MANY_ENGINE=spark: use joblib or ray"):
        engine_from_env({"MLOPS_MANY_ENGINE": "spark"})
    with pytest.raises(UsageError, match="needs RAY_ADDRESS"):
        engine_from_env({"MLOPS_MANY_ENGINE": "ray"})
    with pytest.raises(UsageError, match="expected host:port"):
        engine_from_env({"RAY_ADDRESS": "nowhere"})
    with pytest.raises(UsageError, match="MLOPS_MANY_JOBS=x"):
        engine_from_env({"MLOPS_MANY_JOBS": "x"})


@pytest.mark.parametrize("values", [(3, 7), (3.0, 7), (np.int64(3), np.float64(7.0)),
                                    ("north", 12)])
def test_the_service_names_a_partition_as_training_does(values):
    from ml_service.serving.scoring import partition_key

    plain = [v.item() if isinstance(v, np.generic) else v for v in values]  # as JSON gives
    assert partition_key(list(KEYS), plain) == ds.partition_key(KEYS, values)


def test_a_failed_rewrite_leaves_the_old_dataset_whole(tmp_path, monkeypatch):
    import pandas as pd

    frame = pd.DataFrame({"store": [1, 1, 2], "product": [1, 2, 1], "x": [1.0, 2.0, 3.0]})
    root = tmp_path / "data"
    assert ds.write_dataset(frame, root, KEYS) == 2
    before = ds.read_dataset(str(root), KEYS)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full_disk)
    with pytest.raises(OSError, match="No space left"):
        ds.write_dataset(frame.assign(x=0.0), root, KEYS)
    monkeypatch.undo()
    pd.testing.assert_frame_equal(ds.read_dataset(str(root), KEYS), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no staging left behind
    only = ds.read_dataset(str(root), KEYS, {"store=2/product=1"})
    assert only[["store", "product", "x"]].values.tolist() == [[2, 1, 3.0]]


class _FakeRay:
    """``ray`` whose init fails with the given errors, then connects."""

    def __init__(self, errors):
        self.errors, self.inits, self.shutdowns, self.connected = list(errors), 0, 0, False

    def is_initialized(self):
        return self.connected

    def init(self, **kwargs):
        self.inits += 1
        if self.errors:
            raise self.errors.pop(0)
        self.connected = True

    def shutdown(self):
        self.shutdowns += 1


@pytest.mark.parametrize("address, errors, inits, connects", [
    # the Ray Client server failed to start this driver's process: a new connection retries
    ("ray://127.0.0.1:10001", [ConnectionError("Initialization failure from server")], 2, True),
    ("ray://127.0.0.1:10001", [ConnectionError("x")] * 2, 3, True),
    ("ray://127.0.0.1:10001", [ConnectionError("x")] * 3, 3, False),
    # not worth a retry: a wrong address, or a cluster reached without Ray Client
    ("ray://127.0.0.1:10001", [ValueError("bad address")], 1, False),
    ("127.0.0.1:6379", [ConnectionError("x")], 1, False),
])
def test_a_ray_client_connection_is_tried_again_only_when_the_server_failed_it(
        monkeypatch, address, errors, inits, connects):
    from ml_service.many import engines

    fake = _FakeRay(errors)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(engines, "_check_reachable", lambda address: None)
    monkeypatch.setattr(engines, "RETRY_PAUSE", 0.0)
    if connects:
        assert engines.RayEngine(address).address == address
    else:
        with pytest.raises(UsageError, match="cannot connect to the Ray cluster"):
            engines.RayEngine(address)
    assert (fake.inits, fake.connected) == (inits, connects)
    assert fake.shutdowns == inits - connects  # each failed try leaves no half client behind

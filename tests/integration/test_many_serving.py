"""A many-models set served: routed by partition, models loaded on demand through an LRU cache."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from ml_service.serving import create_app
from ml_service.settings import Settings
from ml_service.signing import SignatureError
from tests.conftest import Cli, sign
from tests.integration.test_many_models import edit_partition, run, sales  # noqa: F401

ROWS = [[12.5, 0, 18.0], [9.99, 1, 24.5]]


@pytest.fixture
def bundle(sales):  # noqa: F811 - the fixture of test_many_models
    run(sales)
    edit_partition(sales, 2, 2, "sales", lambda s: s * 1.3)
    run(sales)  # v2: store=2/product=2 retrained, the rest carried over from v1
    result = Cli(sales)("bundle", "--out", str(sales / "bundle"))
    assert result.exit_code == 0, result.output
    return sales / "bundle"


def client_for(bundle, **settings) -> TestClient:
    settings = {"scoring_log_dir": None, **settings}
    return TestClient(create_app(Settings(bundle_dir=bundle, **settings)))


def expected(sales_dir, key: str, rows) -> np.ndarray:
    from ml_service.registry.signed import download_set
    from ml_service.registry import connect
    from sales_forecast.spec import SPEC
    from tests.conftest import model_settings

    models = download_set(connect(model_settings(SPEC)), 2, sales_dir / f"check-{len(key)}")
    return models.load(key).predict(np.asarray(rows, dtype=float))


def test_each_request_is_scored_by_its_partitions_model(bundle):
    with client_for(bundle) as client:
        for store, product, source in ((2, 2, 2), (1, 3, 1)):
            body = {"partition": {"store": store, "product": product}, "data": ROWS}
            response = client.post("/score", json=body)
            assert response.status_code == 200, response.text
            body = response.json()
            key = f"store={store}/product={product}"
            assert body["model"] == {"name": "sales-forecast", "version": 2, "partition": key,
                                     "source_version": source}
            assert np.allclose(body["result"], expected(bundle.parent, key, ROWS))
        metadata = client.get("/metadata").json()
        assert metadata["partition_keys"] == ["store", "product"]
        schema = client.get("/openapi.json").json()["paths"]["/score"]["post"]["requestBody"]
        body_schema = schema["content"]["application/json"]["schema"]
        assert body_schema["required"] == ["partition", "data"]
        assert body_schema["example"]["partition"] == {"store": 1, "product": 1}


BAD = [
    ({"partition": {"store": 9, "product": 1}, "data": ROWS},
     "no model for partition store=9/product=1 in this set"),
    ({"data": ROWS}, 'a many-models set needs "partition": an object with store, product'),
    ({"partition": {"store": 1}, "data": ROWS},
     "partition must name exactly store, product; missing product"),
    ({"partition": {"store": 1, "product": 1, "aisle": 3}, "data": ROWS},
     "partition must name exactly store, product; unknown aisle"),
    ({"partition": {"store": True, "product": 1}, "data": ROWS},
     "partition values must be numbers or strings"),
    ({"partition": {"store": 1, "product": 1}, "data": [[12.5, 0.5, 18.0]]},
     "row 0, feature 'promotion': 0.5 is not one of [0.0, 1.0]"),
]


def test_a_bad_partition_is_a_422_that_says_why(bundle):
    with client_for(bundle) as client:
        for body, message in BAD:
            response = client.post("/score", json=body)
            assert response.status_code == 422, response.text
            assert message in response.json()["detail"]


def test_the_cache_holds_at_most_its_size_and_counts_hits_misses_evictions(bundle):
    with client_for(bundle, model_cache_size=2) as client:
        for store, product in ((1, 1), (1, 2), (1, 1), (1, 3), (1, 2), (1, 2)):
            body = {"partition": {"store": store, "product": product}, "data": ROWS}
            assert client.post("/score", json=body).status_code == 200
        text = client.get("/metrics").text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith("model_cache_")}
    # 1/1 miss, 1/2 miss, 1/1 hit, 1/3 miss (evicts 1/2), 1/2 miss (evicts 1/1), 1/2 hit
    assert values == {"model_cache_hits": 2, "model_cache_misses": 4,
                      "model_cache_evictions": 2, "model_cache_models": 2,
                      "model_cache_capacity": 2}


def test_a_tampered_set_is_refused_at_start(bundle):
    with zipfile.ZipFile(bundle / "models.zip", "a") as archive:
        archive.writestr("store=9/product=9.pkl", b"not in the index")
    with pytest.raises(SignatureError, match="Hash mismatch for 'models.zip'"):
        create_app(Settings(bundle_dir=bundle, scoring_log_dir=None))
    sign(bundle)  # behind the signature, the hashes of the bundle's metadata still hold
    with pytest.raises(Exception, match="refusing to serve a set"):
        create_app(Settings(bundle_dir=bundle, scoring_log_dir=None))


def test_a_tampered_index_is_refused_at_start(bundle):
    index = json.loads((bundle / "index.json").read_text())
    index["store=1/product=1"]["source_version"] = 7
    (bundle / "index.json").write_text(json.dumps(index))
    with pytest.raises(SignatureError, match="Hash mismatch for 'index.json'"):
        create_app(Settings(bundle_dir=bundle, scoring_log_dir=None))
    sign(bundle)
    with pytest.raises(Exception, match="index.json has SHA-256"):
        create_app(Settings(bundle_dir=bundle, scoring_log_dir=None))


def serve_partitions(bundle, logs, frame, shift: float = 0.0) -> list[tuple[str, int]]:
    """Score each partition's rows of ``frame`` (temperature + ``shift``) with the log on."""
    sent = []
    with client_for(bundle, scoring_log_dir=logs) as client:
        for (store, product), rows in frame.groupby(["store", "product"]):
            data = rows[["price", "promotion", "temperature"]].copy()
            data["temperature"] = (data["temperature"] + shift).clip(-40, 50)
            request_id = f"req-{store}-{product}"
            body = {"partition": {"store": int(store), "product": int(product)},
                    "data": data.values.tolist()}
            response = client.post("/score", json=body, headers={"X-Request-ID": request_id})
            assert response.status_code == 200, response.text
            sent.append((request_id, len(rows)))
    return sent


def test_a_sets_log_names_partitions_and_drift_compares_them_with_their_training_rows(
        bundle, tmp_path):
    from ml_service.many.dataset import read_dataset
    from ml_service.serving.scoring_log import read_logs

    sales_dir = bundle.parent
    training = read_dataset(str(sales_dir / "data" / "sales"), ["store", "product"])
    served = training[training["store"] <= 2]  # 6 of the 12 partitions
    logs = tmp_path / "logs"
    serve_partitions(bundle, logs, served)
    logged = read_logs(logs)
    assert len(logged) == len(served)
    versions = logged.groupby(["store", "product"])["source_version"].first().to_dict()
    assert versions[(2, 2)] == 2 and versions[(1, 1)] == 1  # retrained vs carried over
    assert set(logged["model_version"]) == {2}

    result = Cli(sales_dir)("drift", "--logs", str(logs))
    assert result.exit_code == 0, result.output
    assert "over the 6 partitions in the log" in result.stdout and "no drift" in result.stdout
    report = json.loads((sales_dir / "reports" / "drift" / "drift.json").read_text())
    # The reference is those 6 partitions' training rows, not all 12.
    assert report["reference_rows"] == len(served) and report["current_rows"] == len(served)

    warm = tmp_path / "warm"
    serve_partitions(bundle, warm, served, shift=15.0)
    result = Cli(sales_dir)("drift", "--logs", str(warm))
    assert result.exit_code == 4, result.output
    assert "temperature" in result.stderr


def test_a_sets_log_and_outcomes_become_a_partitioned_dataset_the_set_trains_on(bundle, tmp_path):
    from ml_service.many.dataset import read_dataset

    sales_dir = bundle.parent
    keys = ["store", "product"]
    training = read_dataset(str(sales_dir / "data" / "sales"), keys)
    new = training[training["store"] == 3].copy()
    logs = tmp_path / "logs"
    sent = serve_partitions(bundle, logs, new)
    truth = pd.DataFrame([{"request_id": request_id, "row": row, "sales": 5000.0 + row}
                          for request_id, count in sent for row in range(count)])
    truth.to_csv(tmp_path / "truth.csv", index=False)
    out = tmp_path / "collected"
    result = Cli(sales_dir)("collect", "--logs", str(logs), "--outcomes",
                            str(tmp_path / "truth.csv"), "--out", str(out),
                            "--base", str(sales_dir / "data" / "sales"))
    assert result.exit_code == 0, result.output
    assert f"wrote {len(training) + len(new)} rows" in result.stdout
    assert "(12 partitions in 4 store directories)" in result.stdout
    collected = read_dataset(str(out), keys)
    assert len(collected) == len(training) + len(new)
    store3 = collected[collected["store"] == 3]
    assert len(store3) == 2 * len(new)  # its training rows, then the logged ones
    assert (store3["sales"] >= 5000).sum() == len(new)  # with their outcomes

    # The next training run takes the collected data: only store 3's partitions changed.
    result, summary = Cli(sales_dir).run("--data", str(out))
    assert result.exit_code == 0, result.output
    changed = {k: v for k, v in summary["counts"].items() if k != "unchanged"}
    assert summary["counts"]["unchanged"] == 9 and sum(changed.values()) == 3, summary


def test_collect_refuses_a_log_without_partitions_and_keeps_the_old_dataset(bundle, tmp_path):
    sales_dir = bundle.parent
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "scoring-x.jsonl").write_text(json.dumps(
        {"request_id": "a", "row": 0, "model_version": 2, "price": 3.0, "promotion": 0,
         "temperature": 10.0, "prediction": 4.0}) + "\n")
    pd.DataFrame({"request_id": ["a"], "row": [0], "sales": [3.0]}).to_csv(
        tmp_path / "truth.csv", index=False)
    out = tmp_path / "collected"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    result = Cli(sales_dir)("collect", "--logs", str(logs), "--outcomes",
                            str(tmp_path / "truth.csv"), "--out", str(out))
    assert result.exit_code == 2, result.output
    assert "the scoring log has no partition column(s) store, product" in result.stderr
    assert (out / "keep.txt").read_text() == "old"

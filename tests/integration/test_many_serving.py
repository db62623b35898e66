"""A many-models set served: routed by partition, models loaded on demand through an LRU cache."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient

from ml_service.serving import create_app
from ml_service.settings import Settings
from tests.conftest import Cli
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
    return TestClient(create_app(Settings(bundle_dir=bundle, scoring_log_dir=None, **settings)))


def expected(sales_dir, key: str, rows) -> np.ndarray:
    from ml_service.many.pipeline import download_set
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
        archive.writestr("store=1/product=1.pkl", b"not the model")
    with pytest.raises(Exception, match="refusing to serve a set"):
        create_app(Settings(bundle_dir=bundle, scoring_log_dir=None))


def test_a_tampered_index_is_refused_at_start(bundle):
    index = json.loads((bundle / "index.json").read_text())
    index["store=1/product=1"]["source_version"] = 7
    (bundle / "index.json").write_text(json.dumps(index))
    with pytest.raises(Exception, match="index.json has SHA-256"):
        create_app(Settings(bundle_dir=bundle, scoring_log_dir=None))

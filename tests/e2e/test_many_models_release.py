"""A many-models set through image, QA, production and rollback (the make targets of one model).

The image carries the set's archive and index (hash-checked at start) and
loads partition models on demand; the QA smoke test scores one partition
and compares with the registry's copy of that partition's model.
"""

from __future__ import annotations

import pytest
import requests

from sales_forecast.generate import write
from tests.e2e.conftest import AUTH
from tests.e2e.test_release import alias, make, ok, served_version

pytestmark = pytest.mark.e2e


def score(port: str, store: int, product: int) -> requests.Response:
    body = {"partition": {"store": store, "product": product}, "data": [[12.5, 0, 18.0]]}
    return requests.post(f"http://127.0.0.1:{port}/score", json=body, headers=AUTH, timeout=5)


def test_a_set_is_released_promoted_and_rolled_back_like_a_single_model(env, tmp_path):
    write(tmp_path / "sales", 3, 2, 40)
    env = {**env, "MLOPS_MODEL": "sales", "MLOPS_DATA_PATH": str(tmp_path / "sales")}
    out = ok(make(env, "pipeline"))
    assert "registered version 1 with 6 models" in out
    out = ok(make(env, "release"))
    assert "QA passed: version 1" in out and alias(env, "qa") == 1
    url = f"http://127.0.0.1:{env['MLOPS_QA_PORT']}"
    body = {"partition": {"store": 3, "product": 2}, "data": [[12.5, 0, 18.0]]}
    scored = requests.post(f"{url}/score", json=body, headers=AUTH, timeout=5)
    assert scored.status_code == 200, scored.text
    assert scored.json()["model"]["partition"] == "store=3/product=2"
    elsewhere = {**body, "partition": {"store": 4, "product": 1}}
    unknown = requests.post(f"{url}/score", json=elsewhere, headers=AUTH, timeout=5)
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == "no model for partition store=4/product=1 in this set"
    metrics = requests.get(f"{url}/metrics", timeout=5).text
    # The smoke test's partition (store=1/product=1), then this one.
    assert "model_cache_misses 2.0" in metrics and "model_cache_capacity 1000.0" in metrics

    # Production: the image that passed QA.
    ok(make(env, "promote"))
    assert alias(env, "production") == 1 and served_version(env["MLOPS_PRODUCTION_PORT"]) == 1
    assert score(env["MLOPS_PRODUCTION_PORT"], 3, 2).status_code == 200

    # A new store opens: version 2 adds its partitions and carries the others over.
    write(tmp_path / "sales", 4, 2, 40)
    out = ok(make(env, "pipeline"))
    assert "registered version 2 with 8 models" in out
    ok(make(env, "release"))
    ok(make(env, "promote"))
    assert alias(env, "production") == 2
    opened = score(env["MLOPS_PRODUCTION_PORT"], 4, 1)
    assert opened.status_code == 200, opened.text
    assert opened.json()["model"]["source_version"] == 2
    assert score(env["MLOPS_PRODUCTION_PORT"], 3, 2).json()["model"]["source_version"] == 1

    # Rollback: version 1 again, which has no model for the new store.
    out = ok(make(env, "rollback"))
    assert "production serves version 1 again" in out
    assert alias(env, "production") == 1 and served_version(env["MLOPS_PRODUCTION_PORT"]) == 1
    assert score(env["MLOPS_PRODUCTION_PORT"], 4, 1).status_code == 422

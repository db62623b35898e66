"""A many-models set through image and QA, by the same make targets as a single model.

The image carries the set's archive and index (hash-checked at start) and
loads partition models on demand; the QA smoke test scores one partition
and compares with the registry's copy of that partition's model.
"""

from __future__ import annotations

import pytest
import requests

from sales_forecast.generate import write
from tests.e2e.test_release import alias, make, ok

pytestmark = pytest.mark.e2e


def test_a_set_gets_an_image_and_passes_qa(env, tmp_path):
    write(tmp_path / "sales", 3, 2, 40)
    env = {**env, "MLOPS_MODEL": "sales", "MLOPS_DATA_PATH": str(tmp_path / "sales")}
    out = ok(make(env, "pipeline"))
    assert "registered version 1 with 6 models" in out
    out = ok(make(env, "release"))
    assert "QA passed: version 1" in out and alias(env, "qa") == 1
    url = f"http://127.0.0.1:{env['MLOPS_QA_PORT']}"
    body = {"partition": {"store": 3, "product": 2}, "data": [[12.5, 0, 18.0]]}
    scored = requests.post(f"{url}/score", json=body, timeout=5)
    assert scored.status_code == 200, scored.text
    assert scored.json()["model"]["partition"] == "store=3/product=2"
    elsewhere = {**body, "partition": {"store": 4, "product": 1}}
    unknown = requests.post(f"{url}/score", json=elsewhere, timeout=5)
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == "no model for partition store=4/product=1 in this set"
    metrics = requests.get(f"{url}/metrics", timeout=5).text
    # The smoke test's partition (store=1/product=1), then this one.
    assert "model_cache_misses 2.0" in metrics and "model_cache_capacity 1000.0" in metrics

"""The second model (the test classifier) through image and release, by the same make targets.

The image is the same scoring image: it carries the classifier's bundle, whose
metadata holds its contract and output, and needs no model package.
"""

from __future__ import annotations

import os
import subprocess

import pytest
import requests

from tests.conftest import CANCER_PACKAGE, REPO
from tests.e2e.conftest import AUTH
from tests.e2e.test_release import alias, make, ok

pytestmark = pytest.mark.e2e


def test_the_classifier_gets_an_image_and_passes_qa(env, second_model, tmp_path):
    env = {**env, "PYTHONPATH": str(second_model), "MLOPS_MODEL": "cancer",
           "MLOPS_DATA_PATH": str(tmp_path / "breast_cancer.csv")}
    # `make data` also rewrites the diabetes test fixtures: the CLI writes just the dataset.
    ok(subprocess.run([str(REPO / ".venv" / "bin" / "mlops"), "data"], env={**os.environ, **env},
                      capture_output=True, text=True, timeout=120))
    ok(make(env, "pipeline"))
    out = ok(make(env, "release"))
    assert "QA passed: version 1" in out and alias(env, "qa") == 1
    port = env["MLOPS_QA_PORT"]
    metadata = requests.get(f"http://127.0.0.1:{port}/metadata", timeout=5).json()
    assert metadata["output"] == "predict_proba" and metadata["contract"]["name"] == (
        "breast_cancer")
    bad = requests.post(f"http://127.0.0.1:{port}/score", json={"data": [[1.0] * 7]},
                        headers=AUTH, timeout=5)
    assert bad.status_code == 422 and "expected 8 values (radius" in bad.json()["detail"]
    assert CANCER_PACKAGE.is_dir()

"""A team's own models through image, release and promotion, by the same make targets.

The tree ensembles of tests/models/tree_models: a HistGradientBoosting
classifier of three classes (wine-hgb) and a RandomForest regressor, whose
specs trust the skops types their trees need. The image is the same scoring
image: it carries the model's bundle, whose signed metadata holds its contract,
output and trusted types, and needs no model package. (The logistic-regression
classifier's ONNX form is served in tests/integration/test_second_model.py.)
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import requests

from tests.conftest import CANCER_PACKAGE, REPO, TREE_PACKAGE
from tests.e2e.conftest import AUTH
from tests.e2e.test_release import alias, make, ok

pytestmark = pytest.mark.e2e


#: A team's models that skops does not trust by default (their spec's trusted_types),
#: served by scikit-learn in the image: (data file, contract, output, a bad row's message).
TEAM_MODELS = {
    "wine-hgb": ("wine.csv", "wine", "predict_proba", "expected 13 values (alcohol"),
    "diabetes-forest": ("diabetes.csv", "diabetes", "predict", "expected 10 values (age"),
}


@pytest.mark.parametrize("model", sorted(TEAM_MODELS))
def test_a_tree_model_gets_an_image_passes_qa_and_is_promoted(env, second_model, tmp_path,
                                                              model):
    data, contract, output, short = TEAM_MODELS[model]
    env = {**env, "PYTHONPATH": str(second_model), "MLOPS_MODEL": model,
           "MLOPS_DATA_PATH": str(tmp_path / data)}
    # `make data` also rewrites the diabetes test fixtures: the CLI writes just the dataset.
    ok(subprocess.run([str(REPO / ".venv" / "bin" / "mlops"), "data"], env={**os.environ, **env},
                      capture_output=True, text=True, timeout=120))
    ok(make(env, "pipeline"))
    out = ok(make(env, "release"))
    assert "QA passed: version 1" in out and alias(env, "qa") == 1
    port = env["MLOPS_QA_PORT"]
    metadata = requests.get(f"http://127.0.0.1:{port}/metadata", timeout=5).json()
    assert metadata["output"] == output and metadata["contract"]["name"] == contract
    assert metadata["trusted_types"] and metadata["runtime"]["kind"] == "sklearn"
    bad = requests.post(f"http://127.0.0.1:{port}/score", json={"data": [[1.0] * 7]},
                        headers=AUTH, timeout=5)
    assert bad.status_code == 422 and short in bad.json()["detail"]
    answer = requests.post(f"http://127.0.0.1:{port}/score",
                           json={"data": metadata["example"]}, headers=AUTH, timeout=5).json()
    if output == "predict_proba":  # each row's class, and every class's probability
        assert answer["labels"] == answer["result"] == [0, 1, 2]
        assert [sorted(row) for row in answer["probabilities"]] == [["0", "1", "2"]] * 3
    else:
        assert "labels" not in answer and len(answer["result"]) == len(metadata["example"])
    # Drift on what QA scored, read from the stage's log volume.
    import pandas as pd

    frame = pd.read_csv(tmp_path / data)
    columns = metadata["feature_names"]
    for start in range(0, 150, 50):
        rows = frame.iloc[start:start + 50][columns].to_numpy().tolist()
        assert requests.post(f"http://127.0.0.1:{port}/score", json={"data": rows},
                             headers=AUTH, timeout=5).status_code == 200
    reports = tmp_path / "drift"
    drift = make(env, "drift", "STAGE=qa", f"ARGS=--out {reports}")
    assert drift.returncode in (0, 2) and (reports / "drift.json").is_file(), drift.stderr
    # The 150 rows scored here and the example rows of this test and the release's smoke test.
    assert json.loads((reports / "drift.json").read_text())["current_rows"] == (
        150 + 2 * len(metadata["example"]))
    ok(make(env, "promote"))
    assert alias(env, "production") == 1
    assert CANCER_PACKAGE.is_dir() and TREE_PACKAGE.is_dir()

"""A second, different model through every step a team uses, with no change in ml_service.

The model is the classifier in tests/models/cancer_classifier (its own
contract, ROC AUC where higher is better, a gate on it, predict_proba as its
output), installed beside the diabetes example and chosen with MLOPS_MODEL.
The Docker steps (image, release) are in tests/e2e/test_second_model.py.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient

from tests.conftest import CANCER_PACKAGE, REPO, Cli

CONFIG = CANCER_PACKAGE / "cancer_classifier" / "config.yaml"


def spec():
    from ml_service.spec import load_spec

    return load_spec("cancer")


def config_with(directory, name: str, **model) -> str:
    config = yaml.safe_load(CONFIG.read_text())
    config["model"].update(model)
    path = directory / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture
def registered(cancer):
    """The classifier's data written by `mlops data` and version 1 registered by `mlops run`."""
    cli = Cli(cancer)
    result = cli("data")
    assert result.exit_code == 0, result.output
    result, first = cli.run()
    assert result.exit_code == 0 and first["registered"], result.output
    return cli


def test_the_spec_is_found_by_its_entry_point_and_passes_the_conformance_check(cancer):
    from ml_service.spec import installed_models

    assert set(installed_models()) >= {"diabetes", "cancer"}
    result = Cli(cancer)("check")
    assert result.exit_code == 0, result.output
    assert "model spec 'cancer-logreg' (cancer_classifier): 10 checks passed" in result.output


def test_two_installed_models_and_no_choice_is_a_usage_error(cancer, monkeypatch):
    from ml_service.spec import installed_models

    monkeypatch.delenv("MLOPS_MODEL")
    result = Cli(cancer)("validate")
    assert result.exit_code == 2
    # Whatever else is installed (a team's own models too), each is named.
    names = ", ".join(sorted(installed_models()))
    assert {"cancer", "diabetes", "sales"} <= set(installed_models())
    assert (f"several models are installed ({names}): choose one with "
            "MLOPS_MODEL, or name the default as `model` in the [tool.mlops] table of "
            "./pyproject.toml") in " ".join(result.output.split())
    (cancer / "pyproject.toml").write_text('[tool.mlops]\nmodel = "cancer"\n')
    result = Cli(cancer)("data")  # the project's default: the classifier's example dataset
    assert result.exit_code == 0 and "breast_cancer.csv" in result.output, result.output
    monkeypatch.setenv("MLOPS_MODEL", "churn")
    result = Cli(cancer)("validate")
    assert result.exit_code == 2 and "MLOPS_MODEL=churn is not an installed model" in result.output


def test_validate_uses_the_classifiers_contract(cancer):
    cli = Cli(cancer)
    assert cli("data").exit_code == 0
    path = cancer / "data" / "breast_cancer.csv"
    result = cli("validate")
    assert result.exit_code == 0, result.output
    assert f"{path.relative_to(cancer)}: all" in result.output
    frame = pd.read_csv(path)
    frame.loc[3, "benign"] = 2
    frame.to_csv(cancer / "bad.csv", index=False)
    result = cli("validate", "--data", str(cancer / "bad.csv"))
    assert result.exit_code == 3
    assert "column 'benign'" in result.output and "not in [0.0, 1.0]" in result.output


def test_make_pipeline_registers_then_a_cached_rerun_registers_nothing(cancer):
    cli = Cli(cancer)
    assert cli("data").exit_code == 0
    # make runs in the repository: the data path must not be relative to the test's directory.
    env = {**os.environ, "MLOPS_DATA_PATH": str(cancer / "data" / "breast_cancer.csv")}
    made = subprocess.run(["make", "-C", str(REPO), "pipeline"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    pipeline = json.loads((cancer / "reports" / "pipeline.json").read_text())
    assert pipeline["registered"] and pipeline["version"] == 1
    assert set(pipeline["candidate"]) == {"roc_auc", "accuracy", "log_loss"}
    assert pipeline["candidate"]["roc_auc"] > 0.95 and pipeline["primary_metric"] == "roc_auc"

    result, again = cli.run()
    assert result.exit_code == 0, result.output
    assert not again["registered"] and "identical to registered version 1" in again["reason"]
    assert {"validate", "split", "train", "evaluate"} <= set(again["cached_steps"])


def test_the_gate_compares_roc_auc_where_higher_is_better(registered, cancer):
    # Nearly the same model: not better by the absolute 0.005 margin on ROC AUC.
    result, close = registered.run("--config", config_with(cancer, "close.yaml", C=0.9))
    assert result.exit_code == 0, result.output
    assert not close["registered"]
    assert close["reason"].startswith("not better than the champion v1 by the margin")
    assert "candidate roc_auc" in close["reason"]

    # A floor it cannot meet (ROC AUC is a score: the floor is a lower bound).
    strict = yaml.safe_load(CONFIG.read_text())
    strict["gate"]["floor"]["roc_auc"] = 0.9999
    strict["model"]["C"] = 0.8
    (cancer / "strict.yaml").write_text(yaml.safe_dump(strict))
    result, floored = registered.run("--config", str(cancer / "strict.yaml"), "--dry-run")
    assert "roc_auc" in floored["reason"] and "is below the floor 0.9999" in floored["reason"]

    # Forced through, it is registered and tagged forced.
    result, forced = registered.run("--config", config_with(cancer, "forced.yaml", C=0.9),
                                    "--force")
    assert forced["registered"] and forced["forced"] and forced["version"] == 2


def test_a_gate_on_a_metric_the_model_does_not_compute_is_a_usage_error(cancer):
    config = yaml.safe_load(CONFIG.read_text())
    config["gate"]["primary_metric"] = "rmse"
    (cancer / "wrong.yaml").write_text(yaml.safe_dump(config))
    cli = Cli(cancer)
    assert cli("data").exit_code == 0
    result, _ = cli.run("--config", str(cancer / "wrong.yaml"))
    assert result.exit_code == 2
    assert "names metric 'rmse', which model 'cancer-logreg' does not compute" in result.output


def test_status_shows_the_classifiers_metrics(registered):
    result = registered("status")
    assert result.exit_code == 0, result.output
    assert "cancer-logreg" in result.output and "roc_auc" in result.output
    assert "accuracy" in result.output and "rmse" not in result.output


@pytest.fixture
def served(registered, cancer):
    """The champion bundled and served in-process, logging what it scores."""
    from ml_service.bundle import BundleMetadata
    from ml_service.serving import create_app
    from tests.conftest import model_settings

    result = registered("bundle", "--out", str(cancer / "bundle"))
    assert result.exit_code == 0, result.output
    metadata = BundleMetadata.read(cancer / "bundle")
    settings = model_settings(spec(), bundle_dir=cancer / "bundle")
    with TestClient(create_app(settings)) as client:
        yield client, metadata


def test_the_bundle_carries_the_classifiers_contract_and_output(served):
    _, metadata = served
    assert metadata.name == "cancer-logreg" and metadata.output == "predict_proba"
    assert metadata.data_contract.name == "breast_cancer"
    assert metadata.feature_names[:2] == ["radius", "texture"]


def test_the_service_scores_probabilities_equal_to_the_registry_models(served, cancer):
    from ml_service.registry import connect
    from tests.conftest import model_settings

    client, _ = served
    example = [list(row) for row in spec().example]
    response = client.post("/score", json={"data": example})
    assert response.status_code == 200, response.text
    result = np.asarray(response.json()["result"])
    assert ((0 <= result) & (result <= 1)).all()
    model = connect(model_settings(spec())).load_model(1)
    frame = pd.DataFrame(example, columns=spec().contract.feature_names)
    np.testing.assert_allclose(result, model.predict_proba(frame)[:, 1], rtol=1e-9)
    named = client.post("/score", json={"data": [dict(zip(frame.columns, example[0]))]})
    assert named.json()["result"][0] == pytest.approx(result[0])


def test_request_validation_and_docs_come_from_the_classifiers_contract(served):
    client, _ = served
    row = [list(r) for r in spec().example][0]
    bad = client.post("/score", json={"data": [row, [*row[:3], -5.0, *row[4:]]]})
    assert bad.status_code == 422
    assert bad.json() == {"detail": "row 1, feature 'area': -5 is outside [0, 6000]",
                          "row": 1, "feature": "area"}
    short = client.post("/score", json={"data": [row[:7]]})
    assert short.status_code == 422
    assert "expected 8 values (radius, texture" in short.json()["detail"]
    schema = client.get("/openapi.json").json()["paths"]["/score"]["post"]["requestBody"]
    body = schema["content"]["application/json"]["schema"]
    variants = body["properties"]["data"]["items"]["oneOf"]
    assert variants[0]["minItems"] == variants[0]["maxItems"] == 8
    assert variants[1]["properties"]["smoothness"]["maximum"] == 0.5
    assert body["example"]["data"][0] == row
    metrics = client.get("/metrics").text
    assert 'scoring_prediction_bucket{le="0.1"}' in metrics  # buckets over (0, 1)


def score_dataset(client, frame: pd.DataFrame, prefix: str, size: int = 50) -> None:
    names = spec().contract.feature_names
    for start in range(0, len(frame), size):
        chunk = frame.iloc[start:start + size]
        response = client.post("/score", json={"data": chunk[names].to_numpy().tolist()},
                               headers={"X-Request-ID": f"{prefix}-{start}"})
        assert response.status_code == 200, response.text


def serve_and_log(registered, cancer, frame: pd.DataFrame, log: str, prefix: str) -> None:
    """Score ``frame`` through the champion's service, logging to ``cancer / log``."""
    from ml_service.serving import create_app
    from tests.conftest import model_settings

    assert registered("bundle", "--out", str(cancer / "bundle")).exit_code == 0
    settings = model_settings(spec(), bundle_dir=cancer / "bundle",
                              scoring_log_dir=cancer / log)
    with TestClient(create_app(settings)) as client:
        score_dataset(client, frame, prefix)
    # leaving the block stopped the app: the log is drained and closed


def test_drift_and_collect_work_on_the_classifiers_scoring_log(registered, cancer):
    data = pd.read_csv(cancer / "data" / "breast_cancer.csv")
    serve_and_log(registered, cancer, data.iloc[:300], "log", "batch")

    result = registered("drift", "--logs", str(cancer / "log"), "--out", str(cancer / "drift"))
    assert result.exit_code == 0, result.output
    report = json.loads((cancer / "drift" / "drift.json").read_text())
    names = [*spec().contract.feature_names, "prediction"]
    assert [c["name"] for c in report["columns"]] == names
    assert report["drifted"] == []

    outcomes = pd.DataFrame({
        "request_id": [f"batch-{(i // 50) * 50}" for i in range(300)],
        "row": [i % 50 for i in range(300)],
        "benign": data["benign"].iloc[:300].to_numpy(),
    })
    outcomes.to_csv(cancer / "outcomes.csv", index=False)
    result = registered("collect", "--outcomes", str(cancer / "outcomes.csv"),
                        "--out", str(cancer / "collected.csv"), "--logs", str(cancer / "log"))
    assert result.exit_code == 0, result.output
    collected = pd.read_csv(cancer / "collected.csv")
    assert list(collected.columns) == spec().contract.columns and len(collected) == 300
    pd.testing.assert_frame_equal(collected, data.iloc[:300].reset_index(drop=True),
                                  check_dtype=False)

    # Outcomes named otherwise than the contract's target: said, then mapped.
    outcomes.rename(columns={"benign": "outcome"}).to_csv(cancer / "renamed.csv", index=False)
    args = ["collect", "--outcomes", str(cancer / "renamed.csv"), "--out",
            str(cancer / "again.csv"), "--logs", str(cancer / "log")]
    result = registered(*args)
    assert result.exit_code == 2
    assert "lacks column(s) ['benign'] (the target column is named as in the data contract, " \
        "'benign'; --target-column maps another name to it)" in " ".join(result.stderr.split())
    result = registered(*args, "--target-column", "outcome")
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_csv(cancer / "again.csv"), collected)


def test_drift_flags_a_shifted_classifier_feature(registered, cancer):
    data = pd.read_csv(cancer / "data" / "breast_cancer.csv").iloc[:300].copy()
    data["area"] = data["area"] * 1.6
    serve_and_log(registered, cancer, data, "shifted", "shifted")
    result = registered("drift", "--logs", str(cancer / "shifted"), "--out", str(cancer / "d"))
    assert result.exit_code == 4, result.output
    assert "drift above threshold in" in result.output and "area" in result.output

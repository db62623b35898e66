"""The model card: built by the pipeline, logged to MLflow, bundled, served, printed."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from ml_service.serving import create_app
from ml_service.settings import Settings
from tests.conftest import model_settings, write_config


@pytest.fixture
def two_versions(cli, workdir):
    """v1 (alpha 1000), then v2 (the committed config), better beyond noise."""
    cli.run("--config", str(write_config(workdir, "weak.yaml", alpha=1000.0)))
    result, summary = cli.run()
    assert summary["registered"] and summary["version"] == 2, result.output
    settings = model_settings()
    uri = settings.resolved_tracking_uri
    return summary, MlflowClient(tracking_uri=uri, registry_uri=uri), settings.model_name


def test_the_card_carries_the_runs_figures(cli, workdir, two_versions):
    summary, client, name = two_versions
    result = cli("card", "--version", "2", "--json-out", str(workdir / "card.json"),
                 "--markdown", str(workdir / "summary.md"))
    assert result.exit_code == 0, result.output
    card = json.loads((workdir / "card.json").read_text())
    run = client.get_run(summary["run_id"])
    assert card["model"] == {"name": name, "version": 2, "output": "predict",
                             "description": card["model"]["description"],
                             "estimator": "scikit-learn StandardScaler → Ridge"}
    assert card["model"]["description"].startswith("Disease progression")
    # Every figure equals what MLflow logged for the run.
    for metric, value in card["evaluation"]["metrics"].items():
        assert run.data.metrics[metric] == value
        assert run.data.metrics[f"champion_{metric}"] == card["evaluation"]["champion"][metric]
    improvement = card["evaluation"]["improvement"]
    assert improvement == summary["improvement"] and improvement["low"] > 0
    assert run.data.metrics["improvement_low"] == improvement["low"]
    assert run.data.metrics["holdout_rows"] == card["data"]["holdout_rows"] == 80
    assert run.data.metrics["train_rows"] == card["data"]["train_rows"] == 362
    assert card["data"]["digest"] == run.data.tags["dataset_digest"]
    assert card["training"]["git_commit"] == run.data.tags["git_commit"]
    for row in card["evaluation"]["slices"]:
        label = row["group"].replace(">=", "ge").replace("<", "lt")
        assert run.data.metrics[f"slice.{row['slice']}.{label}.rmse"] == row["candidate"]
    assert card["data_validation"] == {"success": True, "evaluated": 47,
                                       "summary": "all 47 expectations passed"}
    assert set(card["drift_baseline"]["columns"]) == {*card_features(card), "prediction"}
    assert card["limitations"][0].startswith("Trained on 442 patients")
    # The Markdown says the same, and went to the summary file too.
    text = (workdir / "summary.md").read_text()
    assert text.startswith(f"## Model card: {name} version 2")
    assert "95% CI" in text and "| sex=1 | 42 |" in text and "Known limitations" in text
    logged = client.download_artifacts(summary["run_id"], "model_card/model_card.md")
    assert open(logged).read() == text


def card_features(card):
    return [f["name"] for f in card["data"]["features"]]


def test_the_bundle_serves_the_card_of_its_version(cli, workdir, two_versions):
    assert cli("bundle", "--version", "2", "--out", str(workdir / "b")).exit_code == 0
    app = create_app(Settings(bundle_dir=workdir / "b"))
    with TestClient(app) as client:
        card = client.get("/model-card")
        assert card.status_code == 200 and card.json()["model"]["version"] == 2
        text = client.get("/model-card", params={"format": "markdown"})
        assert text.headers["content-type"].startswith("text/markdown")
        assert text.text.startswith("## Model card: diabetes-ridge version 2")
    # A card of another version is refused at start, not served.
    wrong = json.loads((workdir / "b" / "model_card.json").read_text())
    wrong["model"]["version"] = 1
    (workdir / "b" / "model_card.json").write_text(json.dumps(wrong))
    with pytest.raises(RuntimeError, match="describes diabetes-ridge version 1, not"):
        create_app(Settings(bundle_dir=workdir / "b"))


def test_a_changed_card_in_the_run_is_refused(cli, workdir, two_versions):
    summary, client, name = two_versions
    client.set_model_version_tag(name, "2", "model_card.sha256", "0" * 64)
    result = cli("bundle", "--version", "2", "--out", str(workdir / "b"))
    assert result.exit_code == 1
    assert "does not match the hash recorded at registration" in result.stderr
    assert not (workdir / "b").exists()


def test_a_version_without_a_card_serves_404_and_card_says_why(cli, workdir, two_versions):
    _, client, name = two_versions
    client.delete_model_version_tag(name, "1", "model_card.sha256")
    result = cli("card", "--version", "1")
    assert result.exit_code == 1 and "registered before cards existed" in result.stderr
    assert cli("bundle", "--version", "1", "--out", str(workdir / "b")).exit_code == 0
    with TestClient(create_app(Settings(bundle_dir=workdir / "b"))) as served:
        response = served.get("/model-card")
    assert response.status_code == 404 and "no model card" in response.json()["detail"]

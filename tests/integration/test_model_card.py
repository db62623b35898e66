"""The model card: built by the pipeline, logged to MLflow, bundled, served, printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from ml_service.serving import create_app
from ml_service.settings import Settings
from ml_service.signing import SignatureError
from tests.conftest import model_settings, sign, write_config


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
    # A card of another version is refused at start, not served: changed after
    # signing, by its signature; signed so (a bug upstream), by its version.
    wrong = json.loads((workdir / "b" / "model_card.json").read_text())
    wrong["model"]["version"] = 1
    (workdir / "b" / "model_card.json").write_text(json.dumps(wrong))
    with pytest.raises(SignatureError, match="Hash mismatch for 'model_card.json'"):
        create_app(Settings(bundle_dir=workdir / "b"))
    sign(workdir / "b")
    with pytest.raises(RuntimeError, match="describes diabetes-ridge version 1, not"):
        create_app(Settings(bundle_dir=workdir / "b"))


def run_artifacts(client, run_id: str) -> Path:
    """The run's artifact folder in the embedded store."""
    from urllib.parse import urlsplit

    return Path(urlsplit(client.get_run(run_id).info.artifact_uri).path)


def test_a_changed_card_in_the_run_is_refused(cli, workdir, two_versions):
    summary, client, name = two_versions
    client.set_model_version_tag(name, "2", "model_card.sha256", "0" * 64)  # tags decide nothing
    assert cli("bundle", "--version", "2", "--out", str(workdir / "a")).exit_code == 0
    card = run_artifacts(client, summary["run_id"]) / "model_card" / "model_card.json"
    card.write_text(card.read_text().replace("Trained on", "Approved for"))
    for args in (("bundle", "--version", "2", "--out", str(workdir / "b")),
                 ("card", "--version", "2")):
        result = cli(*args)
        assert result.exit_code == 2, result.output
        assert ("diabetes-ridge version 2 does not match its signature: Hash mismatch for "
                "'model_card.json'") in result.stderr
    assert not (workdir / "b").exists()


def test_a_version_from_before_cards_and_signing_is_signed_once_rechecked(
        cli, workdir, two_versions):
    """Migration: `mlops sign` re-checks an unsigned version the old way, then signs it."""
    import shutil

    summary, client, name = two_versions
    run_id = client.get_model_version(name, "1").run_id
    for folder in ("signature", "model_card"):
        shutil.rmtree(run_artifacts(client, run_id) / folder)
    client.delete_model_version_tag(name, "1", "model_card.sha256")
    for args in (("card", "--version", "1"), ("bundle", "--version", "1", "--out", "b")):
        result = cli(*args)
        assert result.exit_code == 2 and "diabetes-ridge version 1 is not signed" in result.stderr
        assert "`make sign VERSION=1` re-checks it the old way and signs it" in result.stderr
    signed = cli("sign", "--version", "1")
    assert signed.exit_code == 0, signed.output
    assert "after re-checking it: a skops model of default-trusted types, no model card" \
        in signed.output
    again = cli("sign", "--version", "1")
    assert again.exit_code == 2 and "already has a signature" in again.stderr
    result = cli("card", "--version", "1")
    assert result.exit_code == 1 and "registered before cards existed" in result.stderr
    assert cli("verify", "--version", "1").exit_code == 0
    assert cli("bundle", "--version", "1", "--out", str(workdir / "b")).exit_code == 0
    with TestClient(create_app(Settings(bundle_dir=workdir / "b"))) as served:
        response = served.get("/model-card")
    assert response.status_code == 404 and "no model card" in response.json()["detail"]


def test_card_without_a_version_says_which_card_and_why(cli, two_versions):
    from ml_service.registry import connect

    result = cli("card")
    assert result.exit_code == 0, result.output
    assert ("the model card of diabetes-ridge version 2: no version has passed QA yet (alias "
            "'qa'), so the champion's") in result.stderr
    connect(model_settings()).set_alias("qa", 1)
    result = cli("card")
    assert "the model card of diabetes-ridge version 1: the version with alias 'qa'" in \
        result.stderr

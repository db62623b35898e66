"""Classifiers as users expect them: labels, each class's probability, a spec's threshold.

The multi-class model is tests/models/tree_models' wine-hgb (three cultivars,
gradient-boosted trees); the binary one is cancer-hgb. Neither changes a line
of ml_service. Their image, release and promotion are in
tests/e2e/test_second_model.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.conftest import Cli, model_settings


def use(model: str, second_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(second_model))
    monkeypatch.setenv("PYTHONPATH", str(second_model))
    monkeypatch.setenv("MLOPS_MODEL", model)
    monkeypatch.delenv("MLOPS_DATA_PATH", raising=False)


def register(workdir: Path) -> Cli:
    cli = Cli(workdir)
    assert cli("data").exit_code == 0
    result, first = cli.run()
    assert result.exit_code == 0 and first["registered"], result.output
    return cli


@pytest.fixture
def wine(second_model: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``workdir`` with wine-hgb's version 1 registered."""
    use("wine-hgb", second_model, monkeypatch)
    return register(workdir)


def test_a_multiclass_model_answers_with_labels_and_every_class_probability(wine, workdir):
    from ml_service.registry import connect
    from ml_service.serving import create_app
    from ml_service.spec import load_spec

    spec = load_spec("wine-hgb")
    assert wine("bundle", "--out", str(workdir / "bundle")).exit_code == 0
    data = pd.read_csv(workdir / "data" / "wine.csv")
    names = spec.contract.feature_names
    settings = model_settings(spec, bundle_dir=workdir / "bundle",
                              scoring_log_dir=workdir / "log")
    with TestClient(create_app(settings)) as client:
        answer = client.post("/score", json={"data": data[names].to_numpy().tolist()}).json()
        records = client.post("/score", json={"data": [dict(zip(names, row))
                                                       for row in spec.example]}).json()
        schema = client.get("/openapi.json").json()["paths"]["/score"]["post"]
        metadata = client.get("/metadata").json()
    model = connect(model_settings(spec), spec.trusted_types).load_model(1)
    expected = model.predict_proba(data[names])
    probabilities = np.array([[row[c] for c in ("0", "1", "2")]
                              for row in answer["probabilities"]])
    np.testing.assert_allclose(probabilities, expected, rtol=1e-12)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert answer["labels"] == model.predict(data[names]).tolist() == answer["result"]
    assert all(isinstance(label, int) for label in answer["labels"])  # 2, not 2.0
    # The model tells the cultivars apart: most rows are labelled as the data says.
    assert np.mean(np.array(answer["labels"]) == data["cultivar"].to_numpy()) > 0.9
    assert records["labels"] == [0, 1, 2]
    # The answer's schema is documented, classes and all.
    body = schema["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"labels", "probabilities"} <= set(body["required"])
    assert body["properties"]["labels"]["items"]["enum"] == [0, 1, 2]
    assert body["properties"]["probabilities"]["items"]["required"] == ["0", "1", "2"]
    assert metadata["output"] == "predict_proba"
    assert metadata["contract"]["target"]["allowed_values"] == [0, 1, 2]
    # The scoring log keeps one number per row, the label: drift and collect read it.
    logged = pd.concat(pd.read_json(f, lines=True) for f in sorted((workdir / "log").rglob(
        "*.jsonl")))
    assert sorted(logged["prediction"].unique().tolist()) == [0, 1, 2]


def test_multiclass_metrics_card_and_signature(wine, workdir):
    import mlflow

    from ml_service.registry import connect
    from ml_service.spec import load_spec

    spec = load_spec("wine-hgb")
    registry = connect(model_settings(spec), spec.trusted_types)
    info = registry.get_version(1)
    assert {"log_loss", "macro_f1", "roc_auc_ovr", "accuracy"} <= set(info.metrics)
    result = wine("card")
    assert result.exit_code == 0, result.output
    assert "### By class (holdout)" in result.output
    assert "Labels are the most probable class." in result.output
    rows = [line for line in result.output.splitlines() if line.startswith(("| 0 |", "| 1 |",
                                                                           "| 2 |"))]
    assert len(rows) == 3
    # The MLflow model says what it returns: each class's probability, as a pyfunc too.
    mlflow.set_tracking_uri(model_settings(spec).resolved_tracking_uri)
    uri = f"models:/{spec.name}/1"
    signature = mlflow.models.get_model_info(uri).signature
    assert [c.name for c in signature.outputs.inputs] == [
        "probability_0", "probability_1", "probability_2"]


def test_the_gate_compares_multiclass_models_row_by_row(wine, workdir):
    """A second candidate: the paired interval resamples rows of probability matrices."""
    from ml_service.spec import load_spec

    import yaml

    config = yaml.safe_load(load_spec("wine-hgb").config_path.read_text())
    config["model"]["learning_rate"] = 0.05
    (workdir / "other.yaml").write_text(yaml.safe_dump(config))
    result, again = wine.run("--config", str(workdir / "other.yaml"), "--force")
    assert result.exit_code == 0, result.output
    assert again["champion_version"] == 1 and again["primary_metric"] == "log_loss"
    improvement = again["improvement"]
    assert improvement["low"] <= improvement["point"] <= improvement["high"]


def test_a_binary_classifier_labels_at_the_threshold_it_was_registered_with(
        second_model, workdir, monkeypatch, caplog):
    from ml_service.bundle import BundleMetadata
    from ml_service.registry import connect
    from ml_service.registry.export import export_bundle
    from ml_service.serving import create_app
    from ml_service.spec import load_spec
    from ml_service.training.config import load_config
    from ml_service.training.pipeline import run_pipeline

    use("cancer-hgb", second_model, monkeypatch)
    assert Cli(workdir)("data").exit_code == 0
    spec = load_spec("cancer-hgb")
    data = pd.read_csv(workdir / "data" / "breast_cancer.csv")
    rows = data[spec.contract.feature_names].to_numpy().tolist()
    registry = connect(model_settings(spec), spec.trusted_types)
    answers = {}
    for version, threshold in ((1, 0.5), (2, 0.99)):  # a team raises its threshold
        strict = replace(spec, threshold=threshold)
        result = run_pipeline(workdir / "data" / "breast_cancer.csv", strict,
                              load_config(spec.config_path, strict), model_settings(strict),
                              registry, force=True)
        assert result.version == version
        directory = workdir / f"bundle-{version}"
        export_bundle(registry, version, directory, spec)  # today's spec says 0.5
        assert BundleMetadata.read(directory).threshold == threshold  # as registered, signed
        with TestClient(create_app(model_settings(spec, bundle_dir=directory))) as client:
            answers[threshold] = client.post("/score", json={"data": rows}).json()
    assert "the version was registered with threshold 0.99, the spec now says 0.5" in \
        caplog.text
    for threshold, answer in answers.items():
        p = np.asarray(answer["result"])
        assert answer["labels"] == np.where(p >= threshold, 1, 0).tolist()
        np.testing.assert_allclose([r["1"] for r in answer["probabilities"]], p)
        np.testing.assert_allclose([r["0"] for r in answer["probabilities"]], 1 - p)
    assert sum(answers[0.99]["labels"]) < sum(answers[0.5]["labels"])

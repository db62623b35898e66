"""Tree ensembles a team brings, through every step, with no change in ml_service.

Three test models (tests/models/tree_models): HistGradientBoosting classifiers
on the breast-cancer data (binary) and the wine data (three classes), and a
RandomForest regressor on the diabetes data.
Their fitted trees are types skops does not trust by default; each spec
declares exactly the type it needs (``trusted_types``), and check,
registration, the gate, bundle, serving and drift trust that and no more.
The Docker steps (image, release) are in tests/e2e/test_second_model.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.conftest import Cli, model_settings

MODELS = {
    "cancer-hgb": ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
                   "breast_cancer.csv"),
    "diabetes-forest": ("sklearn.tree._tree.Tree", "diabetes.csv"),
    "wine-hgb": ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
                 "wine.csv"),
}


def spec(name: str):
    from ml_service.spec import load_spec

    return load_spec(name)


@pytest.fixture(params=sorted(MODELS))
def tree(request, second_model: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch):
    """``workdir`` with the tree models installed, ``MLOPS_MODEL`` naming one of them."""
    monkeypatch.syspath_prepend(str(second_model))
    monkeypatch.setenv("PYTHONPATH", str(second_model))
    monkeypatch.setenv("MLOPS_MODEL", request.param)
    monkeypatch.delenv("MLOPS_DATA_PATH", raising=False)
    return request.param


@pytest.fixture
def registered(tree, workdir):
    cli = Cli(workdir)
    result = cli("data")
    assert result.exit_code == 0, result.output
    result, first = cli.run()
    assert result.exit_code == 0 and first["registered"], result.output
    return cli


def test_check_passes_with_the_declared_type_and_names_the_field_without_it(tree, workdir):
    from ml_service.conformance import SpecError, check_spec

    result = Cli(workdir)("check")
    assert result.exit_code == 0, result.output
    assert "fit, score and save the example dataset" in result.output
    needed, _ = MODELS[tree]
    with pytest.raises(SpecError) as refused:
        check_spec(replace(spec(tree), trusted_types=()))
    problem = str(refused.value)
    assert f"the fitted model holds types skops does not trust by default: ['{needed}']" in \
        problem
    assert f"ModelSpec(trusted_types=('{needed}',))" in problem


@pytest.mark.parametrize("trusted", [("builtins.eval",), ("os.system",), ("not a type",)])
def test_check_refuses_trusting_what_can_run_code(trusted):
    from ml_service.conformance import SpecError, check_spec

    with pytest.raises(SpecError, match="trusted types: trusted_types"):
        check_spec(replace(spec("diabetes"), trusted_types=trusted), fit=False)


def test_registered_serves_and_the_gate_compares_it(registered, tree, workdir):
    """Registration, the gate's champion, bundle and service all load the trees."""
    from ml_service.bundle import BundleMetadata
    from ml_service.registry import connect
    from ml_service.serving import create_app

    import yaml

    model_spec = spec(tree)
    config = yaml.safe_load(model_spec.config_path.read_text())
    config["model"]["random_state"] = 1  # another candidate: the champion is loaded and compared
    (workdir / "other.yaml").write_text(yaml.safe_dump(config))
    result, again = registered.run("--config", str(workdir / "other.yaml"), "--force")
    assert result.exit_code == 0, result.output
    assert again["registered"] and again["champion_version"] == 1
    assert {"low", "high"} <= set(again["improvement"])  # paired against the loaded champion
    exported = registered("bundle", "--out", str(workdir / "bundle"))
    assert exported.exit_code == 0, exported.output
    metadata = BundleMetadata.read(workdir / "bundle")
    assert metadata.trusted_types == list(model_spec.trusted_types)
    # skl2onnx converts these trees only in single precision: scikit-learn serves them.
    assert metadata.runtime_kind == "sklearn" and "skl2onnx" in metadata.runtime["reason"]
    settings = model_settings(model_spec, bundle_dir=workdir / "bundle")
    example = [list(row) for row in model_spec.example]
    with TestClient(create_app(settings)) as client:
        response = client.post("/score", json={"data": example})
    assert response.status_code == 200, response.text
    model = connect(model_settings(model_spec), model_spec.trusted_types).load_model(2)
    frame = pd.DataFrame(example, columns=model_spec.contract.feature_names)
    expected = model_spec.predict(model, frame)
    answer = response.json()
    if expected.ndim == 2:  # multi-class: each class's probability, and the likeliest class
        served = [[row[k] for k in ("0", "1", "2")] for row in answer["probabilities"]]
        np.testing.assert_allclose(served, expected, rtol=1e-12)
        assert answer["labels"] == answer["result"] == expected.argmax(axis=1).tolist()
    else:
        np.testing.assert_allclose(answer["result"], expected, rtol=1e-12)


def test_a_bundle_naming_fewer_types_than_its_model_needs_does_not_start(registered, workdir):
    """The service trusts the bundle's signed list, not the file: one type short, no start."""
    from ml_service.bundle import METADATA_FILE
    from ml_service.errors import MlopsError
    from ml_service.serving import create_app
    from tests.conftest import sign

    assert registered("bundle", "--out", str(workdir / "bundle")).exit_code == 0
    path = workdir / "bundle" / METADATA_FILE
    metadata = json.loads(path.read_text())
    metadata["trusted_types"] = []
    path.write_text(json.dumps(metadata))
    (workdir / "bundle" / "model.sig").unlink()
    sign(workdir / "bundle")  # as if the pipeline had signed it so
    with pytest.raises(MlopsError, match="neither skops' defaults nor the spec's trusted_types"):
        create_app(model_settings(bundle_dir=workdir / "bundle"))


def test_drift_reads_the_trees_scoring_log(registered, tree, workdir):
    from ml_service.serving import create_app

    model_spec = spec(tree)
    _, data_file = MODELS[tree]
    data = pd.read_csv(workdir / "data" / data_file).iloc[:300]
    assert registered("bundle", "--out", str(workdir / "bundle")).exit_code == 0
    settings = model_settings(model_spec, bundle_dir=workdir / "bundle",
                              scoring_log_dir=workdir / "log")
    names = model_spec.contract.feature_names
    with TestClient(create_app(settings)) as client:
        for start in range(0, len(data), 50):
            rows = data.iloc[start:start + 50][names].to_numpy().tolist()
            assert client.post("/score", json={"data": rows}).status_code == 200
    result = registered("drift", "--logs", str(workdir / "log"), "--out", str(workdir / "drift"))
    assert result.exit_code == 0, result.output
    report = json.loads((workdir / "drift" / "drift.json").read_text())
    assert report["current_rows"] == len(data) and report["drifted"] == []


TREE = "sklearn.tree._tree.Tree"
HIST = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"


@pytest.mark.parametrize("family,needs", [("HistGradientBoosting", HIST),
                                          ("RandomForest", TREE), ("GradientBoosting", TREE),
                                          ("ExtraTrees", TREE)])
@pytest.mark.parametrize("kind", ["Classifier", "Regressor"])
def test_every_tree_ensemble_passes_check_and_loads_with_the_one_type_it_declares(
        family, needs, kind, second_model, tmp_path, monkeypatch):
    """Each of scikit-learn's ensembles, as a team would plug it in: a classifier of the
    three wine cultivars, a regressor of diabetes progression; the README's table."""
    from sklearn import ensemble

    from ml_service.bundle import load_skops
    from ml_service.conformance import SpecError, check_spec

    import skops.io

    monkeypatch.syspath_prepend(str(second_model))
    base = spec("wine-hgb" if kind == "Classifier" else "diabetes")
    size = {"max_iter": 20} if family == "HistGradientBoosting" else {"n_estimators": 20}
    estimator = getattr(ensemble, family + kind)
    team = replace(base, build_estimator=lambda params: estimator(random_state=0, **size),
                   trusted_types=(needs,))
    assert "fit, score and save the example dataset" in check_spec(team)
    with pytest.raises(SpecError, match=re.escape(f"ModelSpec(trusted_types=('{needs}',))")):
        check_spec(replace(team, trusted_types=()))
    frame = team.reference_data()
    features = frame[team.contract.feature_names]
    model = team.build_estimator({}).fit(features, frame[team.contract.target.name])
    skops.io.dump(model, tmp_path / "model.skops")
    loaded = load_skops(tmp_path / "model.skops", "the model", team.trusted_types)
    np.testing.assert_array_equal(team.predict(loaded, features), team.predict(model, features))

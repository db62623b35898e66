"""Finding a model through its entry point, and the contract's round trip through a bundle."""

from __future__ import annotations

from dataclasses import replace
from importlib.metadata import EntryPoint

import pytest

from diabetes_regression.schema import CONTRACT
from diabetes_regression.spec import SPEC
from ml_service import spec as spec_module
from ml_service.contract import DataContract
from ml_service.errors import UsageError
from ml_service.settings import Settings


@pytest.fixture(autouse=True)
def outside_the_repository(tmp_path, monkeypatch):
    """No pyproject.toml in the working directory names a default model."""
    monkeypatch.chdir(tmp_path)


def installed(monkeypatch, **entries: str) -> None:
    points = {name: EntryPoint(name, value, spec_module.ENTRY_POINT_GROUP)
              for name, value in entries.items()}
    monkeypatch.setattr(spec_module, "installed_models", lambda: points)


def test_the_only_installed_model_is_the_default(monkeypatch):
    installed(monkeypatch, diabetes="diabetes_regression.spec:SPEC")
    assert spec_module.load_spec().name == "diabetes-ridge"


def test_several_models_need_a_choice_or_the_projects_default(monkeypatch, tmp_path):
    installed(monkeypatch, diabetes="diabetes_regression.spec:SPEC",
              sales="sales_forecast.spec:SPEC")
    with pytest.raises(UsageError, match=r"several models are installed \(diabetes, sales\): "
                                         "choose one with MLOPS_MODEL, or name the default"):
        spec_module.load_spec()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.mlops]\n'
                                             'model = "sales"\n')
    assert spec_module.load_spec().name == "sales-forecast"
    assert spec_module.load_spec("diabetes").name == "diabetes-ridge"  # MLOPS_MODEL wins


@pytest.mark.parametrize(("text", "message"), [
    ("[tool.mlops\n", "is not valid TOML"),
    ("[tool.mlops]\nmodel = 3\n", r"\[tool.mlops\] model must be a string, got 3"),
])
def test_a_broken_project_default_is_a_usage_error(tmp_path, text, message):
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(UsageError, match=message):
        spec_module.project_default_model()


def test_the_repositorys_default_model_is_the_worked_example():
    from tests.conftest import REPO

    assert spec_module.project_default_model(REPO) == "diabetes"


def test_no_installed_model_says_how_to_register_one(monkeypatch):
    installed(monkeypatch)
    with pytest.raises(UsageError, match="register a ModelSpec under the entry-point group"):
        spec_module.load_spec()


def test_an_unknown_model_name_lists_the_installed_ones(monkeypatch):
    installed(monkeypatch, diabetes="diabetes_regression.spec:SPEC")
    with pytest.raises(UsageError, match="MLOPS_MODEL=sales is not an installed model; "
                                         "installed: diabetes"):
        spec_module.load_spec("sales")


def test_an_entry_point_that_does_not_import_is_a_usage_error(monkeypatch):
    installed(monkeypatch, broken="no_such_package.spec:SPEC")
    with pytest.raises(UsageError, match="could not be imported: ModuleNotFoundError"):
        spec_module.load_spec()


def test_an_entry_point_that_is_not_a_spec_is_a_usage_error(monkeypatch):
    installed(monkeypatch, wrong="diabetes_regression.schema:CONTRACT")
    with pytest.raises(UsageError, match="is a DataContract, not a ml_service.spec.ModelSpec"):
        spec_module.load_spec()


def test_the_package_is_taken_from_the_entry_point():
    assert SPEC.package == ""  # as declared; load_spec fills it in
    assert spec_module.load_spec("diabetes").package == "diabetes_regression"


def test_the_contract_survives_its_json_round_trip():
    assert DataContract.from_json(CONTRACT.to_json()) == CONTRACT


def test_settings_take_their_model_defaults_from_the_spec_unless_set(monkeypatch):
    resolved = Settings().for_model(SPEC)
    assert resolved.model_name == resolved.experiment_name == "diabetes-ridge"
    assert resolved.image_name == "diabetes-ridge-scoring"
    assert resolved.data_file == SPEC.data_path and resolved.config_file == SPEC.config_path
    monkeypatch.setenv("MLOPS_MODEL_NAME", "team-model")
    assert Settings().for_model(SPEC).image_name == "team-model-scoring"
    assert Settings().for_model(replace(SPEC, name="other")).model_name == "team-model"


def test_predictions_of_a_classifier_are_the_probability_of_the_last_class():
    import numpy as np

    class Model:
        def predict(self, rows):
            return np.array([1, 0])

        def predict_proba(self, rows):
            return np.array([[0.2, 0.8], [0.9, 0.1]])

    assert spec_module.predictions(Model(), None, "predict_proba").tolist() == [0.8, 0.1]
    assert spec_module.predictions(Model(), None, "predict").tolist() == [1.0, 0.0]


def test_classifier_predictions_labels_and_the_one_number_logged_per_row():
    import numpy as np

    from ml_service.spec import classes_of, labels, point_predictions, predictions

    class Three:
        def predict_proba(self, rows):
            return np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])

    class Two:
        def predict_proba(self, rows):
            return np.array([[0.4, 0.6], [0.8, 0.2]])

    matrix = predictions(Three(), None, "predict_proba")
    assert matrix.shape == (2, 3)  # a multi-class model's every probability
    assert labels(matrix, (0.0, 1.0, 2.0), 0.5).tolist() == [0.0, 2.0]
    assert point_predictions(matrix, (0.0, 1.0, 2.0)).tolist() == [0.0, 2.0]
    p = predictions(Two(), None, "predict_proba")
    assert p.tolist() == [0.6, 0.2]  # a binary one's probability of its last class
    assert labels(p, (3.0, 7.0), 0.5).tolist() == [7.0, 3.0]
    assert labels(p, (3.0, 7.0), 0.65).tolist() == [3.0, 3.0]  # the spec's threshold
    assert point_predictions(p, (3.0, 7.0)).tolist() == [0.6, 0.2]
    target = replace(CONTRACT.target, allowed_values=(2.0, 0.0, 1.0))
    assert classes_of(replace(CONTRACT, target=target), "predict_proba") == (0.0, 1.0, 2.0)
    assert classes_of(CONTRACT, "predict_proba") == (0.0, 1.0)
    assert classes_of(CONTRACT, "predict") == ()


def test_multiclass_metrics_score_the_probability_matrix():
    import numpy as np

    from ml_service.classification import multiclass_metrics, per_class

    y = np.array([0, 1, 2, 2])
    p = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.5, 0.1, 0.4]])
    scores = {m.name: m.function(y, p) for m in multiclass_metrics((0, 1, 2))}
    assert scores["accuracy"] == 0.75
    assert scores["log_loss"] == pytest.approx(-np.mean(np.log([0.8, 0.7, 0.7, 0.4])))
    # F1 of class 0 (precision 1/2, recall 1) and 2 (1, 1/2) is 2/3; of class 1, 1.
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    # Every class's own probability ranks its rows above all others: AUC 1 each.
    assert scores["roc_auc_ovr"] == 1.0
    directions = {m.name: m.greater_is_better for m in multiclass_metrics((0, 1, 2))}
    assert directions == {"log_loss": False, "macro_f1": True, "roc_auc_ovr": True,
                          "accuracy": True}
    rows = per_class(y, p, (0.0, 1.0, 2.0), 0.5)
    assert [(r["class"], r["support"], r["predicted"]) for r in rows] == [
        ("0", 1, 2), ("1", 1, 1), ("2", 2, 1)]
    assert rows[2]["recall"] == 0.5 and rows[0]["precision"] == 0.5

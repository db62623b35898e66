"""The conformance check finds each kind of broken spec, and reports them all at once."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sklearn.base import BaseEstimator
from sklearn.linear_model import Ridge

from diabetes_regression.schema import CONTRACT
from diabetes_regression.spec import SPEC
from ml_service.conformance import SpecError, check_spec
from ml_service.contract import Feature
from ml_service.spec import Metric, Slice


def problems(spec) -> list[str]:
    with pytest.raises(SpecError) as failed:
        check_spec(spec, fit=False)
    return failed.value.problems


def test_the_example_spec_passes():
    assert len(check_spec(SPEC)) == 10


def test_a_factory_returning_a_fitted_estimator_is_caught(diabetes):
    fitted = Ridge().fit(diabetes[CONTRACT.feature_names], diabetes["target"])
    found = problems(replace(SPEC, build_estimator=lambda params: fitted))
    assert found == ["estimator factory: it returned a fitted estimator: return a new, "
                     "unfitted one"]


def test_a_factory_without_the_output_method_is_caught():
    found = problems(replace(SPEC, output="predict_proba"))
    assert found == ["estimator factory: the estimator it returns (Pipeline) has no "
                     "predict_proba()"]


def test_a_metric_without_a_known_direction_is_caught():
    vague = Metric("score", lambda y, p: 0.0, greater_is_better=None)  # type: ignore[arg-type]
    found = problems(replace(SPEC, metrics=(*SPEC.metrics, vague)))
    assert found == ["metrics: 'score': greater_is_better must be True or False, not None "
                     "(its direction must be known)"]


def test_a_config_gating_on_an_unknown_metric_is_caught():
    found = problems(replace(SPEC, metrics=SPEC.metrics[1:]))  # no rmse any more
    assert len(found) == 2  # the config check, and the factory's (it reads the config)
    assert found[0].startswith("config: invalid config") and "names metric 'rmse'" in found[0]


def test_an_example_row_outside_the_contract_is_caught():
    row = list(SPEC.example[0])
    row[2] = 500.0  # bmi
    found = problems(replace(SPEC, example=(tuple(row),)))
    assert found == ["example payload: row 0, feature 'bmi': 500 is outside [10, 80]"]


def test_a_contract_with_an_inverted_range_and_a_duplicate_name_reports_the_first():
    broken = replace(CONTRACT, features=(
        *CONTRACT.features[:-1], Feature("age", "again", 10, 1, (2, 3))))
    found = problems(replace(SPEC, contract=broken, example=()))
    assert "contract: column names used twice: ['age']" in found
    assert "example payload: no example rows: the /docs example and smoke test need one" in found


def test_unknown_slice_columns_and_a_bad_prediction_range_are_caught():
    found = problems(replace(SPEC, slices=(Slice("gender"),), prediction_range=(5.0, 5.0)))
    assert found == [
        "output and prediction range: prediction_range (5.0, 5.0) must be finite with "
        "low < high",
        "slice and partition columns: slices ['gender'] are not columns of the contract",
    ]


def test_the_fit_check_runs_the_estimator_on_the_example_dataset():
    broken = replace(SPEC, build_estimator=lambda params: _NaNModel())
    with pytest.raises(SpecError) as failed:
        check_spec(broken)
    assert failed.value.problems == [
        "fit, score and save the example dataset: Input contains NaN."]


class _NaNModel(BaseEstimator):
    def fit(self, X, y):
        self.fitted_ = True
        return self

    def predict(self, X):
        import numpy as np

        return np.full(len(X), np.nan)


def _classifier(target: Feature, **changes):
    """The diabetes spec as a classifier of its target's classes (a logistic regression)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    contract = replace(CONTRACT, target=target)
    # Named as the example's config gates (any number does here).
    first = lambda y, p: float(p.ravel()[0])  # noqa: E731
    return replace(SPEC, contract=contract, output="predict_proba", metrics=(
        Metric("rmse", first, greater_is_better=False), Metric("r2", first, True)),
        build_estimator=lambda params: make_pipeline(StandardScaler(), LogisticRegression()),
        config_path=SPEC.config_path, **changes)


def test_a_threshold_outside_zero_and_one_and_a_single_class_are_caught():
    one_class = Feature("target", "one class", 0, 1, (0, 1), allowed_values=(1.0, 1.0))
    found = problems(_classifier(one_class, threshold=1.0))
    assert [p for p in found if p.startswith("output")] == [
        "output and prediction range: threshold 1.0 must be a probability strictly between "
        "0 and 1"]
    found = problems(_classifier(one_class))
    assert [p for p in found if p.startswith("output")] == [
        "output and prediction range: a classifier's target target must allow at least two "
        "distinct classes (its allowed_values), got [1.0, 1.0]"]


def test_classes_the_data_does_not_hold_are_caught():
    """The target allows four classes, the example dataset has three: classes_ differ."""
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    four = Feature("target", "cultivar", 0, 3, (0, 2), allowed_values=(0.0, 1.0, 2.0, 3.0))
    features = tuple(Feature(c, c, 0, 5000, (0, 5000)) for c in frame.columns[:-1])
    contract = replace(CONTRACT, features=features, target=four)
    spec = replace(_classifier(four), contract=contract, example=(tuple(frame.iloc[0, :-1]),),
                   reference_data=lambda: frame, slices=())
    with pytest.raises(SpecError) as failed:
        check_spec(spec)
    assert failed.value.problems == [
        "fit, score and save the example dataset: predict_proba() gave shape (178, 3), "
        "expected (178, 4)"]


def test_a_multiclass_many_models_set_is_refused():
    from sales_forecast.spec import SPEC as SALES

    three = Feature("units", "a class", 0, 2, (0, 2), allowed_values=(0.0, 1.0, 2.0))
    spec = replace(SALES, contract=replace(SALES.contract, target=three),
                   output="predict_proba")
    found = [p for p in problems(spec) if p.startswith("output")]
    assert found == ["output and prediction range: a many-models set serves one number per "
                     "row: multi-class partition models are not supported yet"]

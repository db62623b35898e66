import pytest
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from diabetes_regression.schema import CONTRACT
from diabetes_regression.train import build_model


def train_model(frame, params):
    model = build_model(params)
    return model.fit(frame[CONTRACT.feature_names], frame[CONTRACT.target.name])


def test_build_model_returns_an_unfitted_scaler_ridge_pipeline_with_the_params():
    model = build_model({"alpha": 3.5, "random_state": 1})
    assert isinstance(model, Pipeline)
    assert [name for name, _ in model.steps] == ["scaler", "ridge"]
    assert model.get_params()["ridge__alpha"] == 3.5
    with pytest.raises(NotFittedError):
        check_is_fitted(model)


def test_build_model_rejects_unknown_parameters():
    with pytest.raises(TypeError):
        build_model({"alpah": 1.0})


def test_train_model_fits_on_the_contract_features(diabetes):
    model = train_model(diabetes, {"alpha": 1.0})
    check_is_fitted(model)
    assert list(model.feature_names_in_) == CONTRACT.feature_names
    assert model.predict(diabetes[CONTRACT.feature_names]).shape == (len(diabetes),)


def test_larger_alpha_shrinks_the_coefficients(diabetes):
    small = train_model(diabetes, {"alpha": 0.1}).named_steps["ridge"].coef_
    large = train_model(diabetes, {"alpha": 1000.0}).named_steps["ridge"].coef_
    assert abs(large).sum() < abs(small).sum()

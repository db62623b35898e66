"""The compiled form: converted in double precision, used only if it agrees with the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ml_service.bundle import PREDICTION_ATOL, PREDICTION_RTOL
from ml_service.registry import compiled
from ml_service.serving.onnx_model import OnnxPredictor
from ml_service.spec import predictions
from ml_service.training.data import check_rows
from tests.conftest import DATA, fit

FRAME = pd.read_csv(DATA).drop(columns=["target"]).astype(float)
FEATURES = FRAME.to_numpy()


def test_the_diabetes_pipeline_compiles_and_agrees_to_rounding():
    model = fit(pd.read_csv(DATA), {"alpha": 1.0})
    payload, runtime = compiled.compile_model(model, "predict", FEATURES, "the dataset")
    assert payload is not None and runtime["kind"] == "onnx"
    assert runtime["checked_rows"] == len(FEATURES) and runtime["checked_on"] == "the dataset"
    assert runtime["max_abs_difference"] < 1e-9
    assert (runtime["rtol"], runtime["atol"]) == (PREDICTION_RTOL, PREDICTION_ATOL)
    served = OnnxPredictor(payload, "predict").predict_output(FEATURES[:3])
    np.testing.assert_allclose(served, model.predict(FRAME.head(3)), rtol=1e-12)


def test_a_classifier_serves_the_probability_of_the_last_class():
    rows, labels = make_classification(n_samples=200, n_features=6, random_state=0)
    model = Pipeline([("scale", StandardScaler()), ("logreg", LogisticRegression())])
    model.fit(rows, labels)
    payload, runtime = compiled.compile_model(model, "predict_proba", rows, "the training rows")
    assert payload is not None, runtime
    served = OnnxPredictor(payload, "predict_proba")
    np.testing.assert_allclose(served.predict_output(rows), predictions(model, rows,
                                                                        "predict_proba"),
                               rtol=PREDICTION_RTOL, atol=PREDICTION_ATOL)
    np.testing.assert_array_equal(served.predict(rows), model.predict(rows))


class Handmade(BaseEstimator, RegressorMixin):
    """An estimator skl2onnx knows nothing about."""

    def fit(self, rows, target):
        self.mean_ = float(np.mean(target))
        return self

    def predict(self, rows):
        return np.full(len(rows), self.mean_)


def test_an_estimator_skl2onnx_cannot_convert_stays_on_scikit_learn_with_the_reason():
    model = Handmade().fit(FEATURES, np.arange(len(FEATURES)))
    payload, runtime = compiled.compile_model(model, "predict", FEATURES, "the dataset")
    assert payload is None
    assert runtime["kind"] == "sklearn"
    assert runtime["reason"].startswith("skl2onnx cannot convert it")


def test_a_conversion_that_disagrees_is_not_used(monkeypatch):
    model = fit(pd.read_csv(DATA), {"alpha": 1.0})
    honest = OnnxPredictor.predict_output
    monkeypatch.setattr(OnnxPredictor, "predict_output",
                        lambda self, rows: honest(self, rows) + 0.01)
    payload, runtime = compiled.compile_model(model, "predict", FEATURES, "the dataset")
    assert payload is None and runtime["kind"] == "sklearn"
    assert "differs from it by up to 0.01 on 442 rows (the dataset)" in runtime["reason"]


@pytest.mark.parametrize("broken", ["config", "data"])
def test_the_check_falls_back_to_the_example_rows_when_the_holdout_cannot_be_read(
        broken, tmp_path):
    from diabetes_regression.spec import SPEC
    from ml_service.settings import Settings

    settings = Settings(data_path=tmp_path / "missing.csv" if broken == "data" else DATA,
                        config_path=tmp_path / "missing.yaml" if broken == "config" else None
                        ).for_model(SPEC)
    rows, rows_from = check_rows(settings, SPEC)
    assert rows_from == "the spec's example rows" and len(rows) == len(SPEC.example)


def test_the_check_uses_the_examples_and_the_holdout():
    from diabetes_regression.spec import SPEC
    from ml_service.settings import Settings

    rows, rows_from = check_rows(Settings(data_path=DATA).for_model(SPEC), SPEC)
    assert rows_from == "the spec's example rows and the holdout of diabetes.csv"
    assert len(SPEC.example) + 40 < len(rows) < len(FEATURES)


def test_onnxruntime_telemetry_is_off_unless_the_environment_turns_it_on(tmp_path):
    """onnxruntime's Linux builds record sessions for Microsoft's telemetry (a
    /tmp/.ses file, a device id, uploads) unless ORT_DISABLE_TELEMETRY is set
    before it starts; the service sets it."""
    import os
    import subprocess
    import sys

    model = fit(pd.read_csv(DATA), {"alpha": 1.0})
    payload, _ = compiled.compile_model(model, "predict", FEATURES, "the dataset")
    (tmp_path / "model.onnx").write_bytes(payload)
    marker = Path("/tmp/.ses")
    before = marker.stat().st_mtime_ns if marker.exists() else None
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    script = ("import os, numpy as np; from ml_service.serving.onnx_model import OnnxPredictor; "
              "p = OnnxPredictor(open('model.onnx', 'rb').read(), 'predict'); "
              "p.predict(np.ones((1, 10))); print(os.environ['ORT_DISABLE_TELEMETRY'])")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "1"
    assert (marker.stat().st_mtime_ns if marker.exists() else None) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]

import numpy as np
import pytest

from diabetes_regression.evaluate import diagnostic_plots
from diabetes_regression.spec import SPEC


def test_metrics_match_hand_computed_values():
    y_true = np.array([1.0, 2.0, 3.0, 4.0])
    y_pred = np.array([1.0, 2.0, 3.0, 6.0])
    metrics = SPEC.score(y_true, y_pred)
    assert metrics["mse"] == pytest.approx(1.0)
    assert metrics["rmse"] == pytest.approx(1.0)
    assert metrics["mae"] == pytest.approx(0.5)
    assert metrics["r2"] == pytest.approx(1 - 4 / 5)


def test_perfect_predictions_score_zero_error_and_r2_one():
    y = np.linspace(0, 10, 20)
    assert SPEC.score(y, y) == {"rmse": 0.0, "mse": 0.0, "mae": 0.0, "r2": 1.0}


def test_only_r2_is_better_when_larger():
    assert [m.name for m in SPEC.metrics if m.greater_is_better] == ["r2"]


def test_diagnostic_plots_are_png_images():
    y = np.linspace(0, 10, 20)
    plots = diagnostic_plots(y, y + np.sin(y))
    assert set(plots) == {"predicted_vs_actual.png", "residuals.png"}
    for png in plots.values():
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000

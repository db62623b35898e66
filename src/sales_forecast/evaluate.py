"""Holdout metrics of a partition's forecast."""

from __future__ import annotations

import numpy as np

from ml_service.spec import Metric


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error, in units sold."""
    return float(np.mean(np.abs(np.asarray(y_true) - np.asarray(y_pred))))


def wape(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Weighted absolute percentage error: total absolute error over total sales."""
    total = float(np.sum(np.abs(y_true)))
    return float(np.sum(np.abs(np.asarray(y_true) - np.asarray(y_pred)))) / total if total else 0.0


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination (1 is perfect, 0 is the mean)."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    return 1.0 - float(np.sum((y_true - y_pred) ** 2)) / total if total else 0.0


#: WAPE (the business's error measure), MAE and R²; only R² is better when larger.
METRICS = (
    Metric("wape", wape, greater_is_better=False),
    Metric("mae", mae, greater_is_better=False),
    Metric("r2", r2, greater_is_better=True),
)

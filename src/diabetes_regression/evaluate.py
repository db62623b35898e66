"""Holdout metrics and diagnostic plots for a regression model."""

from __future__ import annotations

import io

import numpy as np
from typing import Any

from sklearn import metrics as skm

from ml_service.spec import Metric


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error, in the target's unit."""
    return float(np.sqrt(skm.mean_squared_error(y_true, y_pred)))


#: RMSE, MSE, MAE and R² on the holdout; only R² is better when larger.
METRICS = (
    Metric("rmse", rmse, greater_is_better=False),
    Metric("mse", lambda y, p: float(skm.mean_squared_error(y, p)), greater_is_better=False),
    Metric("mae", lambda y, p: float(skm.mean_absolute_error(y, p)), greater_is_better=False),
    Metric("r2", lambda y, p: float(skm.r2_score(y, p)), greater_is_better=True),
)


def diagnostic_plots(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, bytes]:
    """Render predicted-vs-actual and residual plots as PNG bytes, by file name."""
    import matplotlib

    matplotlib.use("Agg")  # no display on CI runners or servers
    import matplotlib.pyplot as plt

    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    residuals = y_true - y_pred
    plots: dict[str, bytes] = {}

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y_true, y_pred, s=12, alpha=0.7)
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (holdout)")
    plots["predicted_vs_actual.png"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(y_pred, residuals, s=12, alpha=0.7)
    ax.axhline(0, color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="predicted", ylabel="actual - predicted", title="Residuals (holdout)")
    plots["residuals.png"] = _png(fig)
    return plots


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()

"""Holdout metrics and diagnostic plots for a regression model."""

from __future__ import annotations

import io

import numpy as np
from sklearn import metrics as skm

#: Metrics where a larger value is better; every other metric is an error.
GREATER_IS_BETTER = frozenset({"r2"})


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Return RMSE, MSE, MAE and R² of ``y_pred`` against ``y_true``."""
    mse = float(skm.mean_squared_error(y_true, y_pred))
    return {
        "rmse": float(np.sqrt(mse)),
        "mse": mse,
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "r2": float(skm.r2_score(y_true, y_pred)),
    }


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


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()

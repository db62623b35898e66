"""The estimator: an unfitted scikit-learn Pipeline built from config params."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def build_model(params: Mapping[str, Any]) -> Pipeline:
    """Return an unfitted scaler + ridge pipeline.

    Args:
        params: Keyword arguments for ``Ridge`` (``alpha``, ``fit_intercept``,
            ``solver``, ``random_state`` ...), from the ``model`` section of the
            config file.

    Raises:
        TypeError: If ``params`` names an argument ``Ridge`` does not take.
    """
    return Pipeline([("scaler", StandardScaler()), ("ridge", Ridge(**params))])

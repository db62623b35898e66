"""The estimator: an unfitted scikit-learn Pipeline built from config params."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from diabetes_regression.schema import CONTRACT, DataContract


def build_model(params: dict[str, Any]) -> Pipeline:
    """Return an unfitted scaler + ridge pipeline.

    Args:
        params: Keyword arguments for ``Ridge`` (``alpha``, ``fit_intercept``,
            ``solver``, ``random_state`` ...), from the ``model`` section of the
            config file.

    Raises:
        TypeError: If ``params`` names an argument ``Ridge`` does not take.
    """
    return Pipeline([("scaler", StandardScaler()), ("ridge", Ridge(**params))])


def train_model(
    train: pd.DataFrame, params: dict[str, Any], contract: DataContract = CONTRACT
) -> Pipeline:
    """Fit ``build_model(params)`` on the contract's features and target."""
    model = build_model(params)
    model.fit(train[contract.feature_names], train[contract.target.name])
    return model

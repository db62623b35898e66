"""The estimator: scaler + logistic regression, from the config's ``model`` params."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from cancer_classifier.schema import CONTRACT, SOURCE_COLUMNS


def build_model(params: Mapping[str, Any]) -> Pipeline:
    """An unfitted pipeline; ``params`` are LogisticRegression's keyword arguments."""
    return Pipeline([("scaler", StandardScaler()), ("logreg", LogisticRegression(**params))])


def reference_frame() -> pd.DataFrame:
    """scikit-learn's breast cancer data with the contract's columns (no download)."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    return frame[list(SOURCE_COLUMNS)].rename(columns=SOURCE_COLUMNS)[CONTRACT.columns]

"""The estimator of one partition: scaler + ridge, as in the single-model example."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def build_model(params: Mapping[str, Any]) -> Pipeline:
    """Return an unfitted scaler + ridge pipeline with ``params`` for ``Ridge``."""
    return Pipeline([("scaler", StandardScaler()), ("ridge", Ridge(**params))])

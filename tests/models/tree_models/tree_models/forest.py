"""A random-forest regressor on the diabetes data (entry point diabetes-forest).

Its trees are ``sklearn.tree._tree.Tree`` objects, which skops does not trust
by default: the spec declares that type in ``trusted_types``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from sklearn.ensemble import RandomForestRegressor

from diabetes_regression.spec import SPEC as RIDGE


def build_model(params: Mapping[str, Any]) -> RandomForestRegressor:
    """An unfitted forest; ``params`` are its keyword arguments."""
    return RandomForestRegressor(**params)


SPEC = replace(
    RIDGE,
    name="diabetes-forest",
    description="Disease progression one year after baseline (a random forest).",
    build_estimator=build_model,
    config_path=Path(__file__).with_name("forest.yaml"),
    trusted_types=("sklearn.tree._tree.Tree",),
    limitations=("Test model: 442 patients from one study.",),
)

"""A histogram gradient-boosting classifier on the breast-cancer data (entry point cancer-hgb).

Its fitted trees are ``TreePredictor`` objects, a type skops does not trust by
default: the spec declares it, and nothing else, in ``trusted_types``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sklearn.ensemble import HistGradientBoostingClassifier

from cancer_classifier.evaluate import METRICS
from cancer_classifier.schema import CONTRACT
from cancer_classifier.spec import SPEC as LOGREG
from cancer_classifier.train import reference_frame
from ml_service.spec import ModelSpec


def build_model(params: Mapping[str, Any]) -> HistGradientBoostingClassifier:
    """An unfitted classifier; ``params`` are its keyword arguments."""
    return HistGradientBoostingClassifier(**params)


SPEC = ModelSpec(
    name="cancer-hgb",
    description="Probability that a breast mass is benign (gradient-boosted trees).",
    contract=CONTRACT,
    build_estimator=build_model,
    metrics=METRICS,
    config_path=Path(__file__).with_name("hgb.yaml"),
    example=LOGREG.example,
    prediction_range=(0.0, 1.0),
    data_path=Path("data/breast_cancer.csv"),
    output="predict_proba",
    reference_data=reference_frame,
    trusted_types=("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",),
    limitations=("Test model: 569 samples of one dataset; not for diagnosis.",),
)

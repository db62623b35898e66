"""A multi-class gradient-boosting classifier on the wine data (entry point wine-hgb).

Three cultivars (classes 0, 1 and 2, the target's ``allowed_values``) from
thirteen chemical measurements. The service answers with each row's class
and every class's probability; the metrics are ml_service's multi-class set
(log loss, macro F1, one-vs-rest ROC AUC, accuracy).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from ml_service.classification import multiclass_metrics
from ml_service.contract import DataContract, Feature
from ml_service.spec import ModelSpec, as_rows

#: scikit-learn's column names, and the contract's for them.
SOURCE_COLUMNS = {"od280/od315_of_diluted_wines": "od280_od315"}

CONTRACT = DataContract(
    name="wine",
    features=(
        Feature("alcohol", "alcohol, % by volume", 0, 25, (12, 14)),
        Feature("malic_acid", "malic acid, g/l", 0, 15, (1.5, 3.2)),
        Feature("ash", "ash, g/l", 0, 10, (2, 2.8)),
        Feature("alcalinity_of_ash", "alcalinity of ash, meq/l", 0, 60, (16, 23)),
        Feature("magnesium", "magnesium, mg/l", 0, 300, (88, 112)),
        Feature("total_phenols", "total phenols, g/l", 0, 10, (1.8, 2.8)),
        Feature("flavanoids", "flavanoids, g/l", 0, 10, (1.4, 2.7)),
        Feature("nonflavanoid_phenols", "non-flavanoid phenols, g/l", 0, 2, (0.28, 0.45)),
        Feature("proanthocyanins", "proanthocyanins, g/l", 0, 10, (1.2, 2)),
        Feature("color_intensity", "colour intensity (absorbance)", 0, 30, (4, 6.2)),
        Feature("hue", "hue (absorbance ratio)", 0, 3, (0.85, 1.1)),
        Feature("od280_od315", "OD280/OD315 of diluted wines", 0, 6, (2.2, 3)),
        Feature("proline", "proline, mg/l", 0, 3000, (620, 880)),
    ),
    target=Feature("cultivar", "grape cultivar: 0, 1 or 2", 0, 2, (0.6, 1.3),
                   allowed_values=(0.0, 1.0, 2.0)),
    min_rows=100,
)


def build_model(params: Mapping[str, Any]) -> HistGradientBoostingClassifier:
    """An unfitted classifier; ``params`` are its keyword arguments."""
    return HistGradientBoostingClassifier(**params)


def reference_frame() -> pd.DataFrame:
    """scikit-learn's wine data with the contract's columns (no download)."""
    from sklearn.datasets import load_wine

    columns = {**SOURCE_COLUMNS, "target": "cultivar"}
    frame = load_wine(as_frame=True).frame.rename(columns=columns)
    return frame[CONTRACT.columns]


SPEC = ModelSpec(
    name="wine-hgb",
    description="Which of three cultivars a wine comes from, from its chemical analysis.",
    contract=CONTRACT,
    build_estimator=build_model,
    metrics=multiclass_metrics(CONTRACT.target.allowed_values or ()),
    config_path=Path(__file__).with_name("wine.yaml"),
    example=as_rows([
        [14.23, 1.71, 2.43, 15.6, 127, 2.8, 3.06, 0.28, 2.29, 5.64, 1.04, 3.92, 1065],
        [12.37, 0.94, 1.36, 10.6, 88, 1.98, 0.57, 0.28, 0.42, 1.95, 1.05, 1.82, 520],
        [12.86, 1.35, 2.32, 18.0, 122, 1.51, 1.25, 0.21, 0.94, 4.1, 0.76, 1.29, 630],
    ]),
    prediction_range=(0.0, 2.0),
    data_path=Path("data/wine.csv"),
    output="predict_proba",
    reference_data=reference_frame,
    trusted_types=("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",),
    limitations=("Test model: 178 wines of one region; three cultivars only.",),
)

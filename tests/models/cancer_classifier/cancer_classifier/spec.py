"""The classifier's spec, registered as entry point ``cancer`` (group mlops.models)."""

from __future__ import annotations

from pathlib import Path

from cancer_classifier.evaluate import METRICS
from cancer_classifier.schema import CONTRACT
from cancer_classifier.train import build_model, reference_frame
from ml_service.spec import ModelSpec, as_rows

SPEC = ModelSpec(
    name="cancer-logreg",
    description="Probability that a breast mass is benign, from eight nucleus measurements.",
    contract=CONTRACT,
    build_estimator=build_model,
    metrics=METRICS,
    config_path=Path(__file__).with_name("config.yaml"),
    example=as_rows([
        [17.99, 10.38, 122.8, 1001.0, 0.1184, 0.2776, 0.3001, 0.2419],
        [13.54, 14.36, 87.46, 566.3, 0.09779, 0.08129, 0.06664, 0.1885],
        [11.42, 20.38, 77.58, 386.1, 0.1425, 0.2839, 0.2414, 0.2597],
    ]),
    prediction_range=(0.0, 1.0),
    data_path=Path("data/breast_cancer.csv"),
    output="predict_proba",
    reference_data=reference_frame,
    limitations=("Test model: 569 samples of one dataset; not for diagnosis.",),
)

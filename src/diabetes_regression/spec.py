"""The diabetes ridge model's spec: the one object the machinery reads.

Registered in pyproject.toml as entry point ``diabetes`` of the group
``mlops.models``; ``ml_service`` finds it there and never imports this package
by name. Check a changed spec with ``ml_service.conformance.check_spec(SPEC)``.
"""

from __future__ import annotations

from pathlib import Path

from diabetes_regression.data import reference_frame
from diabetes_regression.evaluate import METRICS, diagnostic_plots
from diabetes_regression.schema import CONTRACT
from diabetes_regression.train import build_model
from ml_service.spec import ModelSpec, Slice, as_rows

SPEC = ModelSpec(
    name="diabetes-ridge",
    description="Disease progression one year after baseline, from ten clinical measurements.",
    contract=CONTRACT,
    build_estimator=build_model,
    metrics=METRICS,
    config_path=Path(__file__).with_name("config.yaml"),
    # The first five patients of the dataset, values in contract order: the
    # /docs example (the first, MLOpsPython's) and the release's smoke test.
    example=as_rows([
        [59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87],
        [48, 1, 21.6, 87, 183, 103.2, 70, 3, 3.8918, 69],
        [72, 2, 30.5, 93, 156, 93.6, 41, 4, 4.6728, 85],
        [24, 1, 25.3, 84, 198, 131.4, 40, 5, 4.8903, 89],
        [50, 1, 23.0, 101, 192, 125.4, 52, 4, 4.2905, 80],
    ]),
    # The target's observed span (25-346); the /metrics histogram buckets it.
    prediction_range=(25.0, 350.0),
    data_path=Path("data/diabetes.csv"),
    plots=diagnostic_plots,
    reference_data=reference_frame,
    # The holdout is also scored by sex and by age band (a model card shows
    # these; the gate can refuse a candidate worse on one of them).
    slices=(Slice("sex"), Slice("age", bins=(40.0, 60.0))),
    limitations=(
        "Trained on 442 patients from one 2004 study; not validated on other populations.",
        "A linear model: interactions between measurements are not captured.",
    ),
)

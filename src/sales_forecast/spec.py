"""The sales forecast's spec: a many-models spec (one model per store and product).

Registered in pyproject.toml as entry point ``sales`` of the group
``mlops.models``; choose it with ``MLOPS_MODEL=sales``. The data is synthetic
(see :mod:`sales_forecast.generate`).
"""

from __future__ import annotations

from pathlib import Path

from ml_service.spec import ModelSpec, as_rows
from sales_forecast.evaluate import METRICS
from sales_forecast.generate import reference_frame
from sales_forecast.schema import CONTRACT
from sales_forecast.train import build_model

SPEC = ModelSpec(
    name="sales-forecast",
    description="Weekly units sold of one product in one store (synthetic data), "
                "one model per store and product.",
    contract=CONTRACT,
    build_estimator=build_model,
    metrics=METRICS,
    config_path=Path(__file__).with_name("config.yaml"),
    example=as_rows([[12.5, 0, 18.0], [9.99, 1, 24.5]]),
    prediction_range=(0.0, 800.0),
    data_path=Path("data/sales"),
    reference_data=reference_frame,
    partition_keys=("store", "product"),
    limitations=(
        "Synthetic data: coefficients per store and product are drawn at random.",
        "No lagged sales or calendar effects beyond temperature: a forecast of the "
        "week's demand given its price, promotion and weather, not a time-series model.",
    ),
)

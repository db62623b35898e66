"""The diabetes data contract: feature names, dtypes and valid ranges, declared once.

Everything that checks data derives from ``CONTRACT`` (through the spec): the Great Expectations
suite that gates training data, the scoring service's request validation and the
model's MLflow input signature. Change a feature here and all three follow.

Ranges are physical limits (what a measurement can be), not the observed
min/max of the sample, so that a new, plausible patient is never rejected.
``mean_range`` bounds the column mean of a whole dataset: a cheap check that
catches unit changes and shifted extracts that stay inside the physical limits.
"""

from __future__ import annotations

from ml_service.contract import DataContract, Feature


CONTRACT = DataContract(
    name="diabetes",
    features=(
        Feature("age", "age in years", 0, 120, (40, 57)),
        Feature("sex", "sex, coded 1 or 2", 1, 2, (1.2, 1.8), allowed_values=(1.0, 2.0)),
        Feature("bmi", "body mass index, kg/m2", 10, 80, (23, 30)),
        Feature("bp", "average blood pressure, mm Hg", 40, 200, (85, 105)),
        Feature("s1", "tc, total serum cholesterol, mg/dl", 50, 500, (170, 210)),
        Feature("s2", "ldl, low-density lipoproteins, mg/dl", 10, 400, (100, 135)),
        Feature("s3", "hdl, high-density lipoproteins, mg/dl", 5, 200, (42, 58)),
        Feature("s4", "tch, total cholesterol / HDL", 0.5, 20, (3.5, 4.7)),
        Feature("s5", "ltg, log of serum triglycerides", 2, 8, (4.3, 5.0)),
        Feature("s6", "glu, blood sugar level, mg/dl", 30, 400, (85, 98)),
    ),
    target=Feature(
        "target", "disease progression one year after baseline", 0, 500, (120, 185)
    ),
    min_rows=50,
)

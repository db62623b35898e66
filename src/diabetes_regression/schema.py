"""The data contract: feature names, dtypes and valid ranges, declared once.

Everything that checks data derives from ``CONTRACT``: the Great Expectations
suite that gates training data, the scoring service's request validation and the
model's MLflow input signature. Change a feature here and all three follow.

Ranges are physical limits (what a measurement can be), not the observed
min/max of the sample, so that a new, plausible patient is never rejected.
``mean_range`` bounds the column mean of a whole dataset: a cheap check that
catches unit changes and shifted extracts that stay inside the physical limits.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feature:
    """One column of the data contract.

    Attributes:
        name: Column name, as in the CSV header and the scoring API.
        description: What the column measures, with its unit.
        minimum: Smallest physically valid value (inclusive).
        maximum: Largest physically valid value (inclusive).
        mean_range: Plausible bounds for the mean of a whole dataset.
        allowed_values: If set, the only values the column may take.
    """

    name: str
    description: str
    minimum: float
    maximum: float
    mean_range: tuple[float, float]
    allowed_values: tuple[float, ...] | None = None


@dataclass(frozen=True)
class DataContract:
    """Features, target and dataset-level rules of a tabular regression problem.

    Attributes:
        name: Name of the dataset, used for the expectation suite and MLflow.
        features: The model's inputs, in order.
        target: The column the model predicts.
        min_rows: Fewest rows a training dataset may have.
    """

    name: str
    features: tuple[Feature, ...]
    target: Feature
    min_rows: int

    @property
    def feature_names(self) -> list[str]:
        """Names of the input features, in model order."""
        return [f.name for f in self.features]

    @property
    def columns(self) -> list[str]:
        """All columns of a training dataset: the features, then the target."""
        return [*self.feature_names, self.target.name]

    def feature(self, name: str) -> Feature:
        """Return the feature or target called ``name``.

        Raises:
            KeyError: If the contract has no such column.
        """
        for column in (*self.features, self.target):
            if column.name == name:
                return column
        raise KeyError(name)


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

"""The data contract type: feature names, dtypes and valid ranges, declared once.

A model package declares one :class:`DataContract` in its spec. Everything that
checks data derives from it: the Great Expectations suite that gates training
data, the scoring service's request validation and ``/docs`` schema, and the
model's MLflow input signature. The contract also travels inside every model
bundle (``metadata.json``), so the scoring service needs no model package.

Ranges are physical limits (what a measurement can be), not the observed
min/max of a sample, so that a new, plausible input is never rejected.
``mean_range`` bounds the column mean of a whole dataset: a cheap check that
catches unit changes and shifted extracts that stay inside the physical limits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


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
    """Features, target and dataset-level rules of a tabular problem.

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

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form, as stored in a model bundle's metadata."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DataContract:
        """Rebuild a contract from :meth:`to_json`'s output."""

        def feature(raw: dict[str, Any]) -> Feature:
            allowed = raw.get("allowed_values")
            return Feature(
                name=str(raw["name"]),
                description=str(raw.get("description", "")),
                minimum=float(raw["minimum"]),
                maximum=float(raw["maximum"]),
                mean_range=(float(raw["mean_range"][0]), float(raw["mean_range"][1])),
                allowed_values=None if allowed is None else tuple(float(v) for v in allowed),
            )

        return cls(
            name=str(data["name"]),
            features=tuple(feature(f) for f in data["features"]),
            target=feature(data["target"]),
            min_rows=int(data["min_rows"]),
        )

"""The ML parameters file: model params, split and gate rules, validated on load."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ml_service.errors import UsageError
from ml_service.spec import ModelSpec


class SplitConfig(BaseModel):
    """How rows are divided between training and the holdout."""

    model_config = ConfigDict(extra="forbid")

    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)


class ImprovementRule(BaseModel):
    """The paired bootstrap of the primary metric's improvement over the champion."""

    model_config = ConfigDict(extra="forbid")

    confidence: float = Field(default=0.95, ge=0.5, lt=1, description="Interval's level.")
    resamples: int = Field(default=1000, ge=100, le=100_000, description="Bootstrap resamples.")
    seed: int = Field(default=0, ge=0, description="Resampling seed: same data, same decision.")
    min_lower_bound: float | None = Field(
        default=None, ge=-1,
        description="Register only if the interval's lower bound is above this relative "
                    "improvement (0.0: better beyond noise); null reports the interval only.")


class SliceRule(BaseModel):
    """When a candidate worse than the champion on one slice of the holdout is refused."""

    model_config = ConfigDict(extra="forbid")

    tolerance: float | None = Field(
        default=None, ge=0,
        description="Largest relative loss against the champion allowed on any slice "
                    "group; null reports slices only.")
    min_rows: int = Field(default=10, ge=1, description="Smaller groups are reported, not judged.")


class GateConfig(BaseModel):
    """When a candidate may be registered."""

    model_config = ConfigDict(extra="forbid")

    primary_metric: str = Field(description="A metric of the model's spec.")
    margin: float = Field(
        default=0.01, ge=0,
        description="Improvement required over the champion, as margin_kind says.")
    margin_kind: Literal["relative", "absolute"] = Field(
        default="relative",
        description="relative: a share of the champion's value (0.01 = 1%); absolute: in the "
                    "metric's own units (0.005 of AUC). A bounded metric near its bound (an "
                    "AUC of 0.998) can never gain a relative 1%: use absolute. The bootstrap "
                    "interval and min_lower_bound are in the same kind.")
    floor: dict[str, float] = Field(default_factory=dict)
    improvement: ImprovementRule = Field(default_factory=ImprovementRule)
    slices: SliceRule = Field(default_factory=SliceRule)


class MonitoringConfig(BaseModel):
    """When `mlops drift` calls a feature (or the prediction) drifted."""

    model_config = ConfigDict(extra="forbid")

    psi_threshold: float = Field(default=0.2, gt=0, description="Population stability index.")
    ks_alpha: float = Field(default=0.01, gt=0, lt=1, description="KS test p-value cut-off.")
    bins: int = Field(default=10, ge=2, le=100, description="Quantile bins for the PSI.")
    min_rows: int = Field(default=100, ge=1, description="Fewest logged rows to judge drift.")


class PartitionsConfig(BaseModel):
    """A many-models set: when it may become champion, and how work is chunked."""

    model_config = ConfigDict(extra="forbid")

    min_passing_fraction: float = Field(
        default=0.95, ge=0, le=1,
        description="Share of partitions whose model (new or kept) must meet the floor.")
    max_invalid_fraction: float = Field(
        default=0.02, ge=0, le=1, description="Largest share of partitions with invalid data.")
    chunks_per_worker: int = Field(default=4, ge=1, le=1000,
                                   description="Work units per worker.")


class PipelineConfig(BaseModel):
    """The whole YAML file."""

    model_config = ConfigDict(extra="forbid")

    model: dict[str, Any] = Field(default_factory=dict)
    split: SplitConfig = Field(default_factory=SplitConfig)
    gate: GateConfig
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    partitions: PartitionsConfig = Field(default_factory=PartitionsConfig)

    @field_validator("model")
    @classmethod
    def _model_params_are_named(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not all(isinstance(key, str) for key in value):
            raise ValueError("model parameter names must be strings")
        return value

    def fingerprint(self) -> str:
        """Stable hash of the parameters that shape the trained model."""
        payload = json.dumps(
            {"model": self.model, "split": self.split.model_dump()}, sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()


def load_config(path: Path, spec: ModelSpec) -> PipelineConfig:
    """Read and validate the YAML config at ``path`` for the model of ``spec``.

    Raises:
        UsageError: If the file is missing, not YAML, has invalid values, or
            names a metric the spec does not declare.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"config file {path} must be a mapping of sections")
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise UsageError(f"invalid config {path}: {problems}") from None
    known = spec.metric_names
    for where, name in [("gate.primary_metric", config.gate.primary_metric),
                        *(("gate.floor", n) for n in config.gate.floor)]:
        if name not in known:
            raise UsageError(f"invalid config {path}: {where} names metric '{name}', which "
                             f"model '{spec.name}' does not compute ({', '.join(known)})")
    return config

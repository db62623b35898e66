"""What the pipeline produces: a candidate before the gate, and the run's result.

Kept apart from the pipeline itself so that the modules that log, register
and describe a run (tracking, card) need not import the pipeline that calls
them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from ml_service.contract import DataContract
from ml_service.training.validation import ValidationReport


@dataclass
class PipelineResult:
    """What a pipeline run did; ``as_json`` is the ``--json-out`` contract."""

    registered: bool
    version: int | None
    reason: str
    candidate: dict[str, float]
    champion: dict[str, float] | None
    run_id: str | None
    champion_version: int | None = None
    gate_passed: bool = False
    forced: bool = False
    dry_run: bool = False
    dataset_digest: str = ""
    fingerprint: str = ""
    cached_steps: list[str] = field(default_factory=list)
    validation: str = ""
    primary_metric: str = ""
    #: Paired bootstrap of the primary metric's improvement (None without a champion).
    improvement: dict[str, Any] | None = None
    #: The primary metric per slice group, for candidate and champion.
    slices: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The documented machine-readable summary (plus a few extra keys)."""
        return asdict(self)


@dataclass
class Candidate:
    """A trained, evaluated model before the gate."""

    model: Any
    metrics: dict[str, float]
    plots: dict[str, bytes]
    holdout: pd.DataFrame
    train_rows: int
    digest: str
    frame: pd.DataFrame
    report: ValidationReport
    contract: DataContract
    code_version: str

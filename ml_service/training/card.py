"""Building the card of a version the pipeline registers (see :mod:`ml_service.model_card`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ml_service.model_card import SCHEMA
from ml_service.classification import per_class
from ml_service.spec import ModelSpec, point_predictions
from ml_service.training.config import PipelineConfig

if TYPE_CHECKING:
    from ml_service.training.results import Candidate, PipelineResult


def _stats(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=float)
    p5, p50, p95 = np.percentile(values, [5, 50, 95])
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1
            else 0.0, "p5": float(p5), "p50": float(p50), "p95": float(p95)}


def _classes(spec: ModelSpec, candidate: Candidate) -> dict[str, Any]:
    """A classifier's figures per class on the holdout, and how its labels are decided."""
    holdout = candidate.holdout
    contract = candidate.contract
    predicted = spec.predict(candidate.model, holdout[contract.feature_names])
    return {"threshold": spec.threshold if len(spec.classes) == 2 else None,
            "per_class": per_class(holdout[contract.target.name].to_numpy(), predicted,
                                   spec.classes, spec.threshold)}


def build_card(spec: ModelSpec, config: PipelineConfig, candidate: Candidate,
               result: PipelineResult, name: str, version: int, run_id: str, commit: str,
               dirty: bool) -> dict[str, Any]:
    """The card of ``version``, from the run that registered it.

    Every figure is one the run logs to MLflow (metrics, champion metrics,
    the interval, the slices, the row counts), so the two never disagree.
    """
    contract = candidate.contract
    features = candidate.frame[contract.feature_names]
    baseline = {name: _stats(features[name].to_numpy()) for name in contract.feature_names}
    baseline["prediction"] = _stats(point_predictions(spec.predict(candidate.model, features),
                                                      spec.classes))
    estimator = type(candidate.model)
    steps = getattr(candidate.model, "steps", None)
    described = " → ".join(type(step).__name__ for _, step in steps) if steps else \
        estimator.__name__
    return {
        "schema": SCHEMA,
        "model": {
            "name": name, "version": version, "description": spec.description,
            "output": spec.output, "estimator": f"scikit-learn {described}",
        },
        "gate": {
            "decision": "registered", "reason": result.reason, "forced": result.forced,
            "rules": config.gate.model_dump(),
        },
        "evaluation": {
            "primary_metric": result.primary_metric,
            "metrics": dict(candidate.metrics),
            "higher_is_better": [m.name for m in spec.metrics if m.greater_is_better],
            "champion": result.champion, "champion_version": result.champion_version,
            "improvement": result.improvement, "slices": result.slices,
            **({"classes": _classes(spec, candidate)} if spec.classes else {}),
        },
        "data": {
            "name": contract.name, "digest": candidate.digest, "rows": len(candidate.frame),
            "train_rows": candidate.train_rows, "holdout_rows": len(candidate.holdout),
            "holdout_fraction": config.split.holdout_fraction,
            "target": contract.target.name,
            "features": [{"name": f.name, "description": f.description,
                          "minimum": f.minimum, "maximum": f.maximum}
                         for f in contract.features],
        },
        "data_validation": {
            "success": candidate.report.success, "evaluated": candidate.report.evaluated,
            "summary": candidate.report.summary(),
        },
        "drift_baseline": {**config.monitoring.model_dump(), "columns": baseline},
        "training": {
            "params": config.model, "git_commit": commit, "git_dirty": dirty, "run_id": run_id,
            "package": spec.package, "code_version": candidate.code_version,
        },
        "limitations": list(spec.limitations),
    }

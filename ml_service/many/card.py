"""The model card of a many-models set (see :mod:`ml_service.model_card`).

One card for the registered version that holds the whole set: what the set
predicts and for which partitions, the set's rule and how many partitions got
a new model, kept their champion or were refused, and the distribution of
each holdout metric over the partitions (worst, median, 90th percentile), so
a reviewer sees the spread and not only an average.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ml_service.model_card import SCHEMA
from ml_service.spec import ModelSpec
from ml_service.training.config import PipelineConfig

if TYPE_CHECKING:
    from ml_service.sets import Entry
    from ml_service.many.results import SetResult


def build_set_card(spec: ModelSpec, config: PipelineConfig, entries: list[Entry],
                   result: SetResult, name: str, version: int, run_id: str, commit: str,
                   champion: bool) -> dict[str, Any]:
    """The card of set ``version``, from the run that registered it.

    ``champion``: whether the set passed its rule (alias ``champion`` moves).
    """
    spread: dict[str, dict[str, float]] = {}
    for metric in spec.metrics:
        values = np.asarray([e.metrics[metric.name] for e in entries
                             if metric.name in e.metrics], dtype=float)
        if values.size:
            worst = values.min() if metric.greater_is_better else values.max()
            p10, p50, p90 = np.percentile(values, [10, 50, 90])
            spread[metric.name] = {"worst": float(worst), "p10": float(p10),
                                   "median": float(p50), "p90": float(p90)}
    return {
        "schema": SCHEMA,
        "kind": "model-set",
        "model": {"name": name, "version": version, "description": spec.description,
                  "output": spec.output, "partition_keys": list(spec.partition_keys)},
        "gate": {"rule": result.rule, "champion": champion, "counts": result.counts,
                 "rules": config.gate.model_dump(), "partitions": config.partitions.model_dump()},
        "evaluation": {
            "primary_metric": config.gate.primary_metric,
            "higher_is_better": [m.name for m in spec.metrics if m.greater_is_better],
            "metrics": spread,
        },
        "data": {"partitions": result.partitions, "models": len(entries),
                 "rows": int(sum(e.rows for e in entries)),
                 "contract": spec.contract.name},
        "data_validation": {"problems": result.validation[:20]},
        "training": {"params": config.model, "git_commit": commit, "run_id": run_id,
                     "engine": result.engine, "package": spec.package},
        "limitations": list(spec.limitations),
    }

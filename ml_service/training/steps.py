"""The pipeline's steps, and the runner that caches them.

Each step is a module-level function cached with ``joblib.Memory``: a re-run
with the same data, model code and params reuses the earlier outputs. The cache
key of a step is its arguments plus its own source code; the steps that depend
on the model package also take ``code_version``, a hash of that package's files
(:func:`ml_service.training.provenance.code_version`), so editing the model
package invalidates them too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import joblib
import pandas as pd

from ml_service.contract import DataContract
from ml_service.spec import ModelSpec
from ml_service.training import data as ds
from ml_service.training.validation import ValidationReport, validate_frame

#: Called as ``on_step(name, cached)`` before a step runs.
StepCallback = Callable[[str, bool], None]
T = TypeVar("T")


def validate_step(frame: pd.DataFrame, contract: DataContract,
                  code_version: str) -> ValidationReport:
    """Run the contract's expectation suite on ``frame``.

    ``code_version`` covers the validation module, so changing how the suite is
    built or reported invalidates cached reports.
    """
    return validate_frame(frame, contract)


def split_step(frame: pd.DataFrame, holdout_fraction: float,
               contract: DataContract) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into train and holdout rows by the stable row hash."""
    return ds.split(frame, holdout_fraction, contract)


def train_step(
    train: pd.DataFrame,
    params: Mapping[str, Any],
    build_estimator: Callable[[Mapping[str, Any]], Any],
    contract: DataContract,
    code_version: str,
    train_digest: str,
) -> Any:
    """Fit the spec's estimator on the training rows.

    Cached by ``train_digest`` and ``code_version`` rather than by the
    DataFrame and factory objects: a frame loaded back from the cache pickles
    differently from a fresh one, and the factory's code is in ``code_version``.
    """
    model = build_estimator(dict(params))
    model.fit(train[contract.feature_names], train[contract.target.name])
    return model


def evaluate_step(
    model: Any,
    holdout: pd.DataFrame,
    spec: ModelSpec,
    model_key: str,
    holdout_digest: str,
) -> tuple[dict[str, float], dict[str, bytes]]:
    """Score ``model`` on the holdout: the spec's metrics and plots.

    Cached by ``model_key`` (what the model was trained from, including the
    model package's code) and ``holdout_digest``.
    """
    contract = spec.contract
    y_true = holdout[contract.target.name].to_numpy()
    y_pred = spec.predict(model, holdout[contract.feature_names])
    plots = spec.plots(y_true, y_pred) if spec.plots is not None else {}
    return spec.score(y_true, y_pred), plots


class StepRunner:
    """Runs steps through a ``joblib.Memory`` cache and records which were reused."""

    def __init__(self, cache_dir: Path, on_step: StepCallback | None = None):
        self.memory = joblib.Memory(str(cache_dir), verbose=0)
        self.on_step: StepCallback = on_step or (lambda name, cached: None)
        self.cached: dict[str, bool] = {}

    def __call__(self, name: str, func: Callable[..., T], *args: Any,
                 ignore: tuple[str, ...] = (), **kwargs: Any) -> T:
        """Run ``func(*args, **kwargs)`` as step ``name``, from the cache if possible.

        Args:
            name: Step name, for progress and the list of cached steps.
            func: Module-level step function.
            ignore: Arguments left out of the cache key, because another argument
                (a content digest or code version) identifies them.
        """
        memorized = self.memory.cache(func, ignore=list(ignore))
        hit = bool(memorized.check_call_in_cache(*args, **kwargs))
        self.on_step(name, hit)
        self.cached[name] = hit
        result: T = memorized(*args, **kwargs)
        return result

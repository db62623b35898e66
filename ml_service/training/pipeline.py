"""The training pipeline: load, validate, split, train, evaluate, gate, register.

The steps live in :mod:`ml_service.training.steps` (cached), the gate's rules
in :mod:`ml_service.training.gate` and the MLflow logging in
:mod:`ml_service.training.tracking`; this module runs them in order for the
model described by a :class:`~ml_service.spec.ModelSpec`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ml_service.contract import DataContract
from ml_service.errors import DataValidationError, MlopsError, UsageError
from ml_service.settings import Settings
from ml_service.spec import ModelSpec
from ml_service.training import data as ds
from ml_service.training import validation
from ml_service.training.comparison import (
    Improvement,
    SliceResult,
    paired_improvement,
    slice_results,
)
from ml_service.training.config import PipelineConfig
from ml_service.training.gate import GateDecision, decide
from ml_service.training.provenance import code_version, fingerprint
from ml_service.training.results import Candidate, PipelineResult
from ml_service.training.steps import (
    StepCallback,
    StepRunner,
    evaluate_step,
    split_step,
    train_step,
    validate_step,
)
from ml_service.training.tracking import log_and_register
from ml_service.training.validation import ValidationReport

if TYPE_CHECKING:
    from ml_service.registry import Registry

logger = logging.getLogger(__name__)


def validate_data(path: Path, contract: DataContract, settings: Settings,
                  runner: StepRunner) -> tuple[pd.DataFrame, ValidationReport]:
    """Load and validate ``path``; write the report; raise if the data is invalid.

    Raises:
        DataValidationError: If any expectation fails (exit code 3).
    """
    frame = ds.load_data(path)
    report = runner("validate", validate_step, frame, contract, code_version(validation))
    report_dir = settings.reports_dir
    json_path = report.write(report_dir)
    if not report.success:
        raise DataValidationError(
            f"data validation failed for {path}\n{report.summary()}\n"
            f"report: {json_path} (Great Expectations result) and {report_dir / 'validation.md'}",
            report=report,
        )
    return frame, report


def build_candidate(path: Path, spec: ModelSpec, config: PipelineConfig, settings: Settings,
                    runner: StepRunner) -> Candidate:
    """Load, validate, split, train and evaluate: everything before the gate."""
    contract = spec.contract
    frame, report = validate_data(path, contract, settings, runner)
    train, holdout = runner("split", split_step, frame, config.split.holdout_fraction, contract)
    if train.empty or holdout.empty:
        raise UsageError(
            f"split of {len(frame)} rows left an empty train or holdout set; "
            "adjust split.holdout_fraction or add rows"
        )
    version = code_version(spec.package) if spec.package else "unversioned"
    train_digest = ds.dataset_digest(train, contract)
    try:
        model = runner(
            "train", train_step, train, config.model, spec.build_estimator, contract, version,
            train_digest, ignore=("train", "build_estimator"),
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(f"invalid model parameters {config.model}: {exc}") from None
    check_classes(spec, model, train)
    model_key = f"{train_digest}:{config.fingerprint()}:{version}"
    metrics, plots = runner(
        "evaluate", evaluate_step, model, holdout, spec, model_key,
        ds.dataset_digest(holdout, contract), ignore=("model", "holdout", "spec"),
    )
    return Candidate(
        model=model, metrics=metrics, plots=plots, holdout=holdout, train_rows=len(train),
        digest=ds.dataset_digest(frame, contract), frame=frame, report=report,
        contract=contract, code_version=version,
    )


@dataclass
class Champion:
    """The current champion, scored on the candidate's holdout."""

    version: int
    metrics: dict[str, float]
    predictions: np.ndarray


def check_classes(spec: ModelSpec, model: Any, train: pd.DataFrame) -> None:
    """A classifier must have learnt exactly the target's classes.

    Raises:
        UsageError: If the training rows miss a class the contract allows (the
            split is by row hash, not stratified), or hold one it does not.
    """
    if not spec.classes:
        return
    learnt = [float(c) for c in getattr(model, "classes_", ())]
    if learnt != list(spec.classes):
        counts = train[spec.contract.target.name].value_counts().sort_index()
        raise UsageError(
            f"the classifier learnt the classes {learnt} from {len(train)} training rows "
            f"({', '.join(f'{k:g}: {n}' for k, n in counts.items())}), but the contract's "
            f"target {spec.contract.target.name} allows {list(spec.classes)}: every allowed "
            "class needs training rows (add data, or change allowed_values)")


def score_champion(registry: Registry, spec: ModelSpec,
                   holdout: pd.DataFrame) -> Champion | None:
    """The champion re-scored on ``holdout``, or None if there is no champion.

    Raises:
        MlopsError: If the champion exists but cannot be scored on this holdout
            (for example, the feature set changed); ``--force`` is the way past.
    """
    version = registry.alias_version("champion")
    if version is None:
        return None
    contract = spec.contract
    model = registry.load_model(version)  # an unsigned or changed champion: SignatureError
    try:
        predictions = spec.predict(model, holdout[contract.feature_names])
        metrics = spec.score(holdout[contract.target.name].to_numpy(), predictions)
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot compare"
        raise MlopsError(
            f"champion version {version} cannot be scored on the current holdout ({exc}); "
            "if the data contract changed on purpose, register with --force"
        ) from exc
    return Champion(version, metrics, predictions)


def run_pipeline(
    path: Path,
    spec: ModelSpec,
    config: PipelineConfig,
    settings: Settings,
    registry: Registry,
    force: bool = False,
    on_step: StepCallback | None = None,
    dry_run: bool = False,
) -> PipelineResult:
    """Run every step and register the candidate if the gate lets it through.

    Args:
        path: Dataset CSV.
        spec: The model's spec.
        config: ML parameters.
        settings: Runtime settings.
        registry: A connected :class:`ml_service.registry.Registry`.
        force: Register whatever the gate says (never a duplicate, though).
        on_step: Progress callback.
        dry_run: Decide but log and register nothing (``mlops evaluate``).
    """
    runner = StepRunner(settings.cache_dir, on_step)
    candidate = build_candidate(path, spec, config, settings, runner)
    runner.on_step("gate", False)
    if dry_run:
        result = _gate(registry, spec, config, candidate, force, runner)
        result.dry_run = True
        return result
    # Gate and register under the registry lock, so that concurrent pipelines
    # neither register the same candidate twice nor leave champion on the worse one.
    with registry.lock():
        result = _gate(registry, spec, config, candidate, force, runner)
        runner.on_step("register" if result.gate_passed else "log", False)
        run_id, version = log_and_register(registry, spec, config, candidate, result, path)
    result.run_id, result.version, result.registered = run_id, version, version is not None
    return result


def compare(spec: ModelSpec, config: PipelineConfig, candidate: Candidate,
            champion: Champion | None) -> tuple[Improvement | None, list[SliceResult]]:
    """The bootstrap interval against the champion, and the primary metric by slice."""
    contract = spec.contract
    holdout = candidate.holdout
    y_true = holdout[contract.target.name].to_numpy()
    mine = spec.predict(candidate.model, holdout[contract.feature_names])
    metric = spec.metric(config.gate.primary_metric)
    theirs = champion.predictions if champion is not None else None
    slices = slice_results(holdout, y_true, mine, theirs, spec.slices, metric)
    if theirs is None:
        return None, slices
    rule = config.gate.improvement
    return paired_improvement(y_true, mine, theirs, metric, rule.confidence, rule.resamples,
                              rule.seed, config.gate.margin_kind), slices


def _gate(registry: Registry, spec: ModelSpec, config: PipelineConfig, candidate: Candidate,
          force: bool, runner: StepRunner) -> PipelineResult:
    champion = score_champion(registry, spec, candidate.holdout)
    champion_version = champion.version if champion else None
    champion_metrics = champion.metrics if champion else None
    higher = {m.name for m in spec.metrics if m.greater_is_better}
    improvement, slices = compare(spec, config, candidate, champion)
    decision = decide(candidate.metrics, champion_metrics, config.gate, higher, force,
                      champion_version, improvement, slices)
    # A binary classifier's threshold decides what it serves: another one is another version.
    served = f":threshold={spec.threshold!r}" if len(spec.classes) == 2 else ""
    key = fingerprint(candidate.digest, config, candidate.code_version + served)
    duplicate = registry.find_tagged("fingerprint", key)
    if duplicate is not None:
        decision = GateDecision(
            False,
            f"identical to registered version {duplicate} (same data, code and params); "
            "nothing new to register",
            forced=decision.forced,
        )
    return PipelineResult(
        registered=False,
        version=None,
        reason=decision.reason,
        candidate=candidate.metrics,
        champion=champion_metrics,
        champion_version=champion_version,
        gate_passed=decision.register,
        run_id=None,
        forced=decision.forced,
        dataset_digest=candidate.digest,
        cached_steps=[name for name, hit in runner.cached.items() if hit],
        validation=candidate.report.summary(),
        fingerprint=key,
        primary_metric=config.gate.primary_metric,
        improvement=improvement.as_json() if improvement is not None else None,
        slices=[asdict(s) for s in slices],
    )

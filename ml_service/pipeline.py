"""The training pipeline: load, validate, split, train, evaluate, gate, register.

Each step is a module-level function cached with ``joblib.Memory``: a re-run
with the same data, model code and params reuses the earlier outputs. The cache
key of a step is its arguments plus its own source code; the steps that depend
on the model package also take ``code_version``, a hash of that package's files,
so editing ``src/`` invalidates them too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import joblib
import numpy as np
import pandas as pd

import diabetes_regression
from diabetes_regression import data as ds
from diabetes_regression import schema as schema_module
from diabetes_regression.evaluate import compute_metrics, diagnostic_plots
from diabetes_regression.schema import CONTRACT, DataContract
from diabetes_regression.train import train_model
from ml_service.config import PipelineConfig
from ml_service.errors import DataValidationError, MlopsError, UsageError
from ml_service.gate import GateDecision, decide
from ml_service import validation
from ml_service.settings import Settings
from ml_service.validation import ValidationReport, validate_frame

logger = logging.getLogger(__name__)

#: Called as ``on_step(name, cached)`` before a step runs.
StepCallback = Callable[[str, bool], None]


# --------------------------------------------------------------------------- steps


def validate_step(
    frame: pd.DataFrame, contract: DataContract, code_version: str
) -> ValidationReport:
    """Run the contract's expectation suite on ``frame``.

    ``code_version`` covers the validation module, so changing how the suite is
    built or reported invalidates cached reports.
    """
    return validate_frame(frame, contract)


def split_step(
    frame: pd.DataFrame, holdout_fraction: float, contract: DataContract
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into train and holdout rows by the stable row hash."""
    return ds.split(frame, holdout_fraction, contract)


def train_step(
    train: pd.DataFrame,
    params: dict[str, Any],
    contract: DataContract,
    code_version: str,
    train_digest: str,
):
    """Fit the model package's estimator on the training rows.

    Cached by ``train_digest`` rather than by the DataFrame object: a frame
    loaded back from the cache pickles differently from a fresh one.
    """
    return train_model(train, params, contract)


def evaluate_step(
    model,
    holdout: pd.DataFrame,
    contract: DataContract,
    model_key: str,
    holdout_digest: str,
) -> tuple[dict[str, float], dict[str, bytes]]:
    """Score ``model`` on the holdout: metrics and diagnostic plots.

    Cached by ``model_key`` (what the model was trained from) and ``holdout_digest``.
    """
    y_true = holdout[contract.target.name].to_numpy()
    y_pred = model.predict(holdout[contract.feature_names])
    return compute_metrics(y_true, y_pred), diagnostic_plots(y_true, y_pred)


# -------------------------------------------------------------------------- runner


class StepRunner:
    """Runs steps through a ``joblib.Memory`` cache and records which were reused."""

    def __init__(self, cache_dir: Path, on_step: StepCallback | None = None):
        self.memory = joblib.Memory(str(cache_dir), verbose=0)
        self.on_step = on_step or (lambda name, cached: None)
        self.cached: dict[str, bool] = {}

    def __call__(self, name: str, func: Callable, *args, ignore: tuple[str, ...] = (), **kwargs):
        """Run ``func(*args, **kwargs)`` as step ``name``, from the cache if possible.

        Args:
            name: Step name, for progress and the list of cached steps.
            func: Module-level step function.
            ignore: Arguments left out of the cache key, because another argument
                (a content digest) identifies them.
        """
        memorized = self.memory.cache(func, ignore=list(ignore))
        hit = bool(memorized.check_call_in_cache(*args, **kwargs))
        self.on_step(name, hit)
        self.cached[name] = hit
        return memorized(*args, **kwargs)


# -------------------------------------------------------------------------- result


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


# ------------------------------------------------------------------------ pipeline


def code_version(*modules) -> str:
    """SHA-256 over the source files of ``modules`` (a package counts all its files).

    With no argument: the model package, whose code shapes the trained model.
    """
    files: list[Path] = []
    for module in modules or (diabetes_regression,):
        path = Path(module.__file__)
        files += sorted(path.parent.glob("*.py")) if path.name == "__init__.py" else [path]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def git_commit() -> tuple[str, bool]:
    """The commit of the project being run and whether its tree has local changes.

    Asks git in the project directory; outside a checkout (an installed wheel),
    falls back to ``GITHUB_SHA`` or "unknown".
    """
    project = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=project, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("GITHUB_SHA", "unknown"), False


def load_data(path: Path) -> pd.DataFrame:
    """Read the dataset, turning file problems into user errors."""
    try:
        return ds.read_dataset(path)
    except FileNotFoundError:
        raise UsageError(f"data file not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"data path is a directory, not a CSV file: {path}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"{path} is not a readable CSV file: {exc}") from None


def validate_data(
    path: Path, settings: Settings, runner: StepRunner, contract: DataContract = CONTRACT
) -> tuple[pd.DataFrame, ValidationReport]:
    """Load and validate ``path``; write the report; raise if the data is invalid.

    Raises:
        DataValidationError: If any expectation fails (exit code 3).
    """
    frame = load_data(path)
    report = runner(
        "validate", validate_step, frame, contract, code_version(validation, schema_module)
    )
    report_dir = settings.reports_dir
    json_path = report.write(report_dir)
    if not report.success:
        raise DataValidationError(
            f"data validation failed for {path}\n{report.summary()}\n"
            f"report: {json_path} (Great Expectations result) and {report_dir / 'validation.md'}",
            report=report,
        )
    return frame, report


def build_candidate(
    path: Path,
    config: PipelineConfig,
    settings: Settings,
    runner: StepRunner,
    contract: DataContract = CONTRACT,
) -> Candidate:
    """Load, validate, split, train and evaluate: everything before the gate."""
    frame, report = validate_data(path, settings, runner, contract)
    train, holdout = runner("split", split_step, frame, config.split.holdout_fraction, contract)
    if train.empty or holdout.empty:
        raise UsageError(
            f"split of {len(frame)} rows left an empty train or holdout set; "
            "adjust split.holdout_fraction or add rows"
        )
    version = code_version()
    train_digest = ds.dataset_digest(train, contract)
    try:
        model = runner(
            "train", train_step, train, config.model, contract, version, train_digest,
            ignore=("train",),
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(f"invalid model parameters {config.model}: {exc}") from None
    model_key = f"{train_digest}:{config.fingerprint()}:{version}"
    metrics, plots = runner(
        "evaluate", evaluate_step, model, holdout, contract, model_key,
        ds.dataset_digest(holdout, contract), ignore=("model", "holdout"),
    )
    return Candidate(
        model=model,
        metrics=metrics,
        plots=plots,
        holdout=holdout,
        train_rows=len(train),
        digest=ds.dataset_digest(frame, contract),
        frame=frame,
        report=report,
    )


def score_champion(registry, holdout: pd.DataFrame, contract: DataContract = CONTRACT):
    """Return (version, metrics) of the champion re-scored on ``holdout``, or (None, None).

    Raises:
        MlopsError: If the champion exists but cannot be scored on this holdout
            (for example, the feature set changed); ``--force`` is the way past.
    """
    version = registry.alias_version("champion")
    if version is None:
        return None, None
    try:
        model = registry.load_model(version)
        predictions = np.asarray(model.predict(holdout[contract.feature_names]))
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot compare"
        raise MlopsError(
            f"champion version {version} cannot be scored on the current holdout ({exc}); "
            "if the data contract changed on purpose, register with --force"
        ) from exc
    return version, compute_metrics(holdout[contract.target.name].to_numpy(), predictions)


def fingerprint(digest: str, config: PipelineConfig, version: str) -> str:
    """Identity of a candidate: same data, same model code, same params."""
    return hashlib.sha256(f"{digest}:{config.fingerprint()}:{version}".encode()).hexdigest()


def run_pipeline(
    path: Path,
    config: PipelineConfig,
    settings: Settings,
    registry,
    force: bool = False,
    on_step: StepCallback | None = None,
    dry_run: bool = False,
) -> PipelineResult:
    """Run every step and register the candidate if the gate lets it through.

    Args:
        path: Dataset CSV.
        config: ML parameters.
        settings: Runtime settings.
        registry: A connected :class:`ml_service.registry.Registry`.
        force: Register whatever the gate says (never a duplicate, though).
        on_step: Progress callback.
        dry_run: Decide but log and register nothing (``mlops evaluate``).
    """
    runner = StepRunner(settings.cache_dir, on_step)
    candidate = build_candidate(path, config, settings, runner)
    runner.on_step("gate", False)
    if dry_run:
        result = _gate(registry, config, candidate, force, runner)
        result.dry_run = True
        return result
    # Gate and register under the registry lock, so that concurrent pipelines
    # neither register the same candidate twice nor leave champion on the worse one.
    with registry.lock():
        result = _gate(registry, config, candidate, force, runner)
        runner.on_step("register" if result.gate_passed else "log", False)
        run_id, version = _log_and_register(
            registry, settings, config, candidate, result, path
        )
    result.run_id, result.version, result.registered = run_id, version, version is not None
    return result


def _gate(registry, config, candidate, force, runner) -> PipelineResult:
    champion_version, champion_metrics = score_champion(registry, candidate.holdout)
    decision = decide(
        candidate.metrics, champion_metrics, config.gate, force, champion_version
    )
    key = fingerprint(candidate.digest, config, code_version())
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
    )


def _log_and_register(
    registry, settings, config, candidate, result: PipelineResult, path
) -> tuple[str, int | None]:
    import mlflow

    commit, dirty = git_commit()
    flat_params = {f"model.{k}": v for k, v in config.model.items()}
    flat_params.update(
        {
            "split.holdout_fraction": config.split.holdout_fraction,
            "gate.primary_metric": config.gate.primary_metric,
            "gate.margin": config.gate.margin,
            **{f"gate.floor.{k}": v for k, v in config.gate.floor.items()},
        }
    )
    with mlflow.start_run(experiment_id=registry.experiment_id()) as run:
        mlflow.set_tags(
            {
                "git_commit": commit,
                "git_dirty": str(dirty).lower(),
                "mlflow.source.git.commit": commit,
                "dataset_digest": candidate.digest,
                "fingerprint": result.fingerprint,
                "gate.decision": "register" if result.gate_passed else "reject",
                "gate.reason": result.reason[:5000],
                "gate.forced": str(result.forced).lower(),
                "champion_version": str(result.champion_version or ""),
                "cached_steps": ",".join(result.cached_steps),
            }
        )
        mlflow.log_params(flat_params)
        mlflow.log_metrics(candidate.metrics)
        if result.champion:
            mlflow.log_metrics({f"champion_{k}": v for k, v in result.champion.items()})
        mlflow.log_metric("train_rows", candidate.train_rows)
        mlflow.log_metric("holdout_rows", len(candidate.holdout))
        with warnings.catch_warnings():
            # MLflow warns that a local path matches two equivalent source types.
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(
                candidate.frame,
                source=str(Path(path).resolve()),
                name=CONTRACT.name,
                targets=CONTRACT.target.name,
                digest=candidate.digest[:20],
            )
        mlflow.log_input(dataset, context="training")
        with tempfile.TemporaryDirectory() as tmp:
            for name, png in candidate.plots.items():
                (Path(tmp) / name).write_bytes(png)
            (Path(tmp) / "validation.json").write_text(
                json.dumps(candidate.report.gx_result, default=str)
            )
            mlflow.log_artifacts(tmp, artifact_path="evaluation")

        if not result.gate_passed:
            return run.info.run_id, None

        features = candidate.holdout[CONTRACT.feature_names]
        info = mlflow.sklearn.log_model(
            candidate.model,
            name="model",
            signature=model_signature(CONTRACT),
            input_example=features.head(3),
            pip_requirements=_pip_requirements(),
        )
        tags = {
            "git_commit": commit,
            "dataset_digest": candidate.digest,
            "fingerprint": result.fingerprint,
            "run_id": run.info.run_id,
            "params": json.dumps(config.model, sort_keys=True),
            "gate.decision": result.reason[:5000],
            "forced": str(result.forced).lower(),
            **{f"metric.{k}": f"{v:.6g}" for k, v in candidate.metrics.items()},
        }
        version = registry.register(info.model_uri, run.info.run_id, tags, info.model_id)
        mlflow.set_tag("registered_version", str(version))
        return run.info.run_id, version


def model_signature(contract: DataContract):
    """MLflow signature derived from the data contract: named doubles in, one double out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("double", name) for name in contract.feature_names]),
        outputs=Schema([ColSpec("double")]),
    )


def _pip_requirements() -> list[str]:
    # Pinned from the running environment: MLflow's own inference imports the
    # model in a subprocess, which is slow and adds nothing for a sklearn model.
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("scikit-learn", "numpy", "scipy", "skops")]

"""Logging a run to MLflow, and registering the model when the gate lets it through."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_service.contract import DataContract
from ml_service.registry.signed import sign_version
from ml_service.spec import ModelSpec
from ml_service.training.card import build_card
from ml_service.training.config import PipelineConfig
from ml_service.training.provenance import git_commit

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

    from ml_service.registry import Registry
    from ml_service.training.results import Candidate, PipelineResult


def log_and_register(registry: Registry, spec: ModelSpec, config: PipelineConfig,
                     candidate: Candidate, result: PipelineResult,
                     path: Path) -> tuple[str, int | None]:
    """Log the run (params, metrics, dataset, plots, validation); register if it passed.

    Returns:
        (MLflow run id, the new version or None when the gate said no).
    """
    import mlflow

    contract = candidate.contract
    commit, dirty = git_commit()
    flat_params: dict[str, Any] = {f"model.{k}": v for k, v in config.model.items()}
    flat_params.update(
        {
            "split.holdout_fraction": config.split.holdout_fraction,
            "gate.primary_metric": config.gate.primary_metric,
            "gate.margin": config.gate.margin,
            **{f"gate.floor.{k}": v for k, v in config.gate.floor.items()},
            **{f"gate.improvement.{k}": v
               for k, v in config.gate.improvement.model_dump().items()},
            **{f"gate.slices.{k}": v for k, v in config.gate.slices.model_dump().items()},
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
        mlflow.log_metrics(comparison_metrics(result))
        mlflow.log_metric("train_rows", candidate.train_rows)
        mlflow.log_metric("holdout_rows", len(candidate.holdout))
        with warnings.catch_warnings():
            # MLflow warns that a local path matches two equivalent source types.
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]
                # As doubles, like the signature: MLflow warns on integer columns.
                candidate.frame[contract.columns].astype(float),
                source=str(Path(path).resolve()),
                name=contract.name,
                targets=contract.target.name,
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

        features = candidate.holdout[contract.feature_names]
        # Saved here, uploaded, and signed as saved: the signature covers the
        # bytes this process wrote, never a copy read back from the registry.
        local = Path(tempfile.mkdtemp(prefix="mlops-model-"))
        with _own_model_loadable():
            mlflow.sklearn.save_model(
                candidate.model,
                str(local / "model"),
                signature=model_signature(contract, spec.classes),
                # What the MLflow model returns when loaded as a pyfunc: a
                # classifier's probabilities (one column per class, as the
                # signature says), a regressor's predictions.
                pyfunc_predict_fn=spec.output,
                input_example=features.head(3).astype(float),
                pip_requirements=_pip_requirements(),
                # Beyond skops' defaults: exactly the spec's reviewed list.
                skops_trusted_types=list(spec.trusted_types) or None,
            )
        mlflow.log_artifacts(str(local / "model"), artifact_path="model")
        tags = {
            "git_commit": commit,
            "dataset_digest": candidate.digest,
            "fingerprint": result.fingerprint,
            "run_id": run.info.run_id,
            "params": json.dumps(config.model, sort_keys=True),
            "gate.decision": result.reason[:5000],
            "forced": str(result.forced).lower(),
            **{f"metric.{k}": f"{v:.6g}" for k, v in candidate.metrics.items()},
            **({"gate.improvement": json.dumps(result.improvement)} if result.improvement else {}),
        }
        try:
            version = registry.register(f"runs:/{run.info.run_id}/model", run.info.run_id, tags)
            mlflow.set_tag("registered_version", str(version))
            card = build_card(spec, config, candidate, result, registry.name, version,
                              run.info.run_id, commit, dirty)
            card_sha = log_card(card, local / "card")
            registry.set_version_tag(version, "model_card.sha256", card_sha)
            sign_version(registry, version, local / "model", local / "card")
        finally:
            shutil.rmtree(local, ignore_errors=True)
        return run.info.run_id, version


def log_card(card: dict[str, Any], directory: Path) -> str:
    """Write the card (JSON and Markdown) to ``directory`` and log it to the active run.

    Returns:
        The JSON's SHA-256. ``directory`` keeps the files, to be signed as written.
    """
    import hashlib

    import mlflow

    from ml_service import model_card

    text = model_card.dumps(card)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / model_card.JSON_FILE).write_text(text)
    (directory / model_card.MARKDOWN_FILE).write_text(model_card.markdown(card))
    mlflow.log_artifacts(str(directory), artifact_path=model_card.ARTIFACT_DIR)
    return hashlib.sha256(text.encode()).hexdigest()


def comparison_metrics(result: PipelineResult) -> dict[str, float]:
    """The interval and the slice figures as MLflow metrics (finite values only).

    ``improvement``, ``improvement_low`` and ``improvement_high`` (relative,
    positive is better) and ``slice.<column>.<group>.<metric>`` for the
    candidate (``champion_slice....`` for the champion).
    """
    import math
    import re

    metrics: dict[str, float] = {}
    if result.improvement:
        for key, name in (("point", "improvement"), ("low", "improvement_low"),
                          ("high", "improvement_high")):
            value = result.improvement.get(key)
            if value is not None and math.isfinite(value):
                metrics[name] = float(value)
    for row in result.slices:
        # MLflow metric names allow letters, digits and _-./ and spaces only.
        label = str(row["group"]).replace(">=", "ge").replace("<", "lt")
        group = re.sub(r"[^\w\-. /]", "_", f"{row['slice']}.{label}")
        metrics[f"slice.{group}.{result.primary_metric}"] = row["candidate"]
        if row["champion"] is not None:
            metrics[f"champion_slice.{group}.{result.primary_metric}"] = row["champion"]
    return metrics


@contextmanager
def _own_model_loadable() -> Iterator[None]:
    """Let MLflow load back the model this process just trained, to check its input example.

    The CLI forbids MLflow to deserialize models (registry models are loaded
    with skops only); the one being logged here was fitted in this process, so
    MLflow may load it while it validates the serving example, and only then.
    """
    name = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
    before = os.environ.get(name)
    os.environ[name] = "true"
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def model_signature(contract: DataContract, classes: tuple[float, ...] = ()) -> ModelSignature:
    """MLflow signature derived from the data contract: named doubles in.

    Out: one double (a regressor's prediction), or a classifier's probability
    of each class, one double column per class named ``probability_<class>``.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    from ml_service.classification import label_text

    outputs: list[ColSpec | TensorSpec] = (
        [ColSpec("double", f"probability_{label_text(c)}") for c in classes] if classes
        else [ColSpec("double")])
    return ModelSignature(
        inputs=Schema([ColSpec("double", name) for name in contract.feature_names]),
        outputs=Schema(outputs),
    )


def _pip_requirements() -> list[str]:
    # Pinned from the running environment: MLflow's own inference imports the
    # model in a subprocess, which is slow and adds nothing for a sklearn model.
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("scikit-learn", "numpy", "scipy", "skops")]

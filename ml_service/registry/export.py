"""Exporting a registered version as a model bundle (see :mod:`ml_service.bundle`)."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ml_service.bundle import (
    METADATA_FILE,
    MODEL_FILE,
    ONNX_FILE,
    BundleMetadata,
    checked_model_file,
    load_skops,
    sha256_file,
)
from ml_service.errors import MlopsError, UsageError
from ml_service import signing
from ml_service.registry.compiled import compile_model
from ml_service.registry.signed import download_verified
from ml_service.registry.store import Registry
from ml_service.spec import ModelSpec

logger = logging.getLogger(__name__)


def export_bundle(registry: Registry, version: int, directory: Path, spec: ModelSpec,
                  check: tuple[np.ndarray, str] | None = None) -> BundleMetadata:
    """Download ``version`` from the registry into ``directory`` as a bundle.

    The model's ONNX form is made and checked here (see
    :mod:`ml_service.registry.compiled`); the bundle's ``runtime`` says whether
    it has one.

    Args:
        registry: A connected :class:`ml_service.registry.Registry`.
        version: The model version to export.
        directory: Target directory: new, empty, or an earlier bundle (replaced).
        spec: The model's spec: its contract and output go into the bundle.
        check: Rows to check the ONNX form on and where they come from
            (:func:`ml_service.training.data.check_rows`); default: the
            spec's example rows.

    Raises:
        MlopsError: If the version does not exist, or is not a model this
            pipeline would load (see :func:`checked_model_file`, :func:`load_skops`).
        UsageError: If ``directory`` holds anything but an earlier bundle.
    """
    if spec.partition_keys:
        return export_set(registry, version, directory, spec)
    info = registry.get_version(version)
    _check_replaceable(directory)
    what = f"{registry.name} version {version}"
    with tempfile.TemporaryDirectory() as tmp:
        local = download_verified(registry, version, Path(tmp))
        flavor, model_file = checked_model_file(local, what)
        # a bundle the service would refuse is no bundle
        model = load_skops(model_file, what, spec.trusted_types)
        rows, rows_from = check or (np.asarray(spec.example, dtype=float),
                                    "the spec's example rows")
        onnx, runtime = compile_model(model, spec.output, rows, rows_from)
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        shutil.copy2(model_file, directory / MODEL_FILE)
        if onnx is not None:
            (directory / ONNX_FILE).write_bytes(onnx)
            runtime["sha256"] = sha256_file(directory / ONNX_FILE)
        _copy_card(local, directory)

    facts = _signed_facts(directory, what, {
        "git_commit": info.tags.get("git_commit", "unknown"),
        "dataset_digest": info.tags.get("dataset_digest", ""),
        "run_id": info.run_id or "", "metrics": info.metrics})
    metadata = BundleMetadata(
        name=registry.name,
        version=int(version),
        sha256=sha256_file(directory / MODEL_FILE),
        git_commit=facts["git_commit"],
        dataset_digest=facts["dataset_digest"],
        run_id=facts["run_id"],
        metrics=facts["metrics"],
        feature_names=spec.contract.feature_names,
        sklearn_version=flavor.get("sklearn_version", ""),
        contract=spec.contract.to_json(),
        output=spec.output,
        prediction_range=list(spec.prediction_range),
        example=[list(row) for row in spec.example],
        runtime=runtime,
        trusted_types=list(spec.trusted_types),
        threshold=_threshold(directory, spec),
    )
    metadata.write(directory)
    _mark(directory)
    _sign_bundle(registry, directory)
    logger.info("exported %s v%s to %s (served by %s)", registry.name, version, directory,
                metadata.runtime_kind)
    return metadata


def _signed_facts(directory: Path, what: str, recorded: dict[str, Any]) -> dict[str, Any]:
    """What the bundle says of the version's training, from its signed model card.

    The registry's tags and run metrics (``recorded``) can be rewritten by
    anyone who can write the registry; the card was signed with the version.
    Where both exist and differ, the card's value is used and the difference
    logged; a version without a card (registered before cards) keeps the
    registry's values.
    """
    from ml_service import model_card

    path = directory / model_card.JSON_FILE
    if not path.is_file():
        return recorded
    card = json.loads(path.read_text())
    signed = {"git_commit": card.get("training", {}).get("git_commit"),
              "run_id": card.get("training", {}).get("run_id"),
              "dataset_digest": card.get("data", {}).get("digest"),
              "metrics": card.get("evaluation", {}).get("metrics")}
    facts = dict(recorded)
    for key in recorded:
        value = signed.get(key)
        if value is None or value == "":
            continue
        if not _same(value, recorded[key]):
            logger.warning("%s: the registry's %s (%s) is not the one its signed model card "
                           "records (%s): the bundle takes the card's", what, key,
                           str(recorded[key])[:60], str(value)[:60])
        facts[key] = value
    return facts


def _threshold(directory: Path, spec: ModelSpec) -> float:
    """A binary classifier's threshold as the version was registered with (its signed card).

    A spec whose threshold changed since serves the version as it was
    evaluated and described; a version without one in its card takes the spec's.
    """
    from ml_service import model_card

    path = directory / model_card.JSON_FILE
    card = json.loads(path.read_text()) if path.is_file() else {}
    registered = (card.get("evaluation", {}).get("classes") or {}).get("threshold")
    if registered is None:
        return spec.threshold
    if float(registered) != spec.threshold:
        logger.warning("the version was registered with threshold %g, the spec now says %g: "
                       "the bundle keeps %g (register a new version to change it)",
                       registered, spec.threshold, registered)
    return float(registered)


def _same(signed: Any, recorded: Any) -> bool:
    """Equal, numbers to the 6 significant digits the registry's metric tags keep."""
    import math

    if isinstance(signed, dict) and isinstance(recorded, dict):
        return signed.keys() == recorded.keys() and all(
            _same(signed[k], recorded[k]) for k in signed)
    if isinstance(signed, (int, float)) and isinstance(recorded, (int, float)):
        return math.isclose(signed, recorded, rel_tol=1e-5, abs_tol=1e-12)
    return bool(signed == recorded)


def _copy_card(verified: Path, directory: Path) -> None:
    """The card signed with the version, when it has one (none before cards existed)."""
    from ml_service import model_card

    if not (verified / model_card.JSON_FILE).is_file():
        logger.warning("%s has no model card (registered before cards existed)", directory)
        return
    for name in (model_card.JSON_FILE, model_card.MARKDOWN_FILE):
        if (verified / name).is_file():
            shutil.copy2(verified / name, directory / name)


def _sign_bundle(registry: Registry, directory: Path) -> None:
    """Sign the bundle made from a verified version; no half bundle is left on failure."""
    try:
        signing.signer(registry.settings).sign(directory)
    except MlopsError:
        shutil.rmtree(directory)
        raise


def export_card(run_id: str | None, expected_sha256: str | None, directory: Path,
                what: str) -> bool:
    """Copy the version's model card from its run into the bundle, checked by hash.

    Versions registered before cards existed have none (no tag): the bundle
    then has no card and ``GET /model-card`` says so.

    Returns:
        Whether a card was copied.

    Raises:
        MlopsError: If the tag names a card the run does not hold unchanged.
    """
    import mlflow.artifacts

    from ml_service import model_card

    if not expected_sha256 or not run_id:
        logger.warning("%s has no model card (registered before cards existed)", what)
        return False
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=model_card.ARTIFACT_DIR, dst_path=tmp))
        except Exception as exc:  # noqa: BLE001 - missing artifact, store error
            raise MlopsError(f"{what}: its model card cannot be read from run {run_id} "
                             f"({type(exc).__name__}: {exc})") from None
        found = sha256_file(local / model_card.JSON_FILE) \
            if (local / model_card.JSON_FILE).is_file() else "missing"
        if found != expected_sha256:
            raise MlopsError(f"{what}: the model card in run {run_id} does not match the hash "
                             f"recorded at registration ({found[:12]} != {expected_sha256[:12]})")
        for name in (model_card.JSON_FILE, model_card.MARKDOWN_FILE):
            shutil.copy2(local / name, directory / name)
    return True


def export_set(registry: Registry, version: int, directory: Path,
               spec: ModelSpec) -> BundleMetadata:
    """Download many-models set ``version`` into ``directory`` as a scoring bundle.

    The bundle holds the set's archive and serving index (both checked against
    the set's metadata first) and a ``metadata.json`` whose ``sha256`` is the
    archive's, so the image and the service check it as they check a model file.

    Raises:
        MlopsError: If the version is not a set, or a file does not match its hash.
    """

    from ml_service.bundle import SET_FILE, SET_INDEX_FILE
    from ml_service.sets import ModelSet

    info = registry.get_version(version)
    _check_replaceable(directory)
    what = f"{registry.name} version {version}"
    if info.tags.get("kind") != "model-set":
        raise MlopsError(f"{what} is not a many-models set (no tag kind=model-set)")
    with tempfile.TemporaryDirectory() as tmp:
        local = download_verified(registry, version, Path(tmp))
        models = ModelSet(local, version)  # every file against the set's metadata
        first_key = models.keys[0] if models.keys else ""
        models.close()
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        for name in (SET_FILE, SET_INDEX_FILE):
            shutil.copy2(local / name, directory / name)
        set_metadata = json.loads((local / "metadata.json").read_text())
        _copy_card(local, directory)
    example_partition = dict(part.split("=", 1) for part in first_key.split("/") if part)
    facts = _signed_facts(directory, what, {"git_commit": info.tags.get("git_commit", "unknown"),
                                            "run_id": info.run_id or ""})
    metadata = BundleMetadata(
        name=registry.name,
        version=int(version),
        sha256=sha256_file(directory / SET_FILE),
        git_commit=facts["git_commit"],
        run_id=facts["run_id"],
        metrics={k.removeprefix("worst."): float(v) for k, v in info.tags.items()
                 if k.startswith("worst.")},
        feature_names=spec.contract.feature_names,
        contract=spec.contract.to_json(),
        output=spec.output,
        prediction_range=list(spec.prediction_range),
        example=[list(row) for row in spec.example],
        partition_keys=list(set_metadata["partition_keys"]),
        set_index_sha256=sha256_file(directory / SET_INDEX_FILE),
        example_partition={k: _number(v) for k, v in example_partition.items()},
        threshold=spec.threshold,
        runtime={"kind": "sklearn", "reason": "a many-models set: partition models are loaded "
                 "on demand and run by scikit-learn"},
    )
    metadata.write(directory)
    _mark(directory)
    _sign_bundle(registry, directory)
    logger.info("exported set %s v%s (%s partitions) to %s", registry.name, version,
                set_metadata.get("partitions"), directory)
    return metadata


def _number(value: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


#: Written into every bundle: only a directory holding it (and nothing a bundle
#: does not hold) is ever replaced by an export.
BUNDLE_MARKER = ".mlops-bundle"
MARKER_TEXT = "a scoring bundle exported by mlops; `mlops bundle --out` replaces this folder\n"
BUNDLE_FILES = {MODEL_FILE, ONNX_FILE, METADATA_FILE, "models.zip", "index.json",
                "model_card.json", "model_card.md", signing.SIGNATURE_FILE, BUNDLE_MARKER}


def _mark(directory: Path) -> None:
    (directory / BUNDLE_MARKER).write_text(MARKER_TEXT)


def _check_replaceable(directory: Path) -> None:
    """Refuse to replace a directory that is not empty and not an earlier bundle.

    An earlier bundle holds the marker :data:`BUNDLE_MARKER` and no file a
    bundle does not have; a folder of one's own named ``metadata.json`` is no bundle.
    """
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        raise UsageError(f"{directory} exists and is not a directory: choose another --out")
    if directory.is_dir():
        contents = {p.name for p in directory.iterdir()}
        marker = directory / BUNDLE_MARKER
        marked = marker.is_file() and not marker.is_symlink() and \
            marker.read_text(errors="replace") == MARKER_TEXT
        if contents and not (marked and contents <= BUNDLE_FILES
                             and all(p.is_file() and not p.is_symlink()
                                     for p in directory.iterdir())):
            raise UsageError(
                f"{directory} is not empty and not a model bundle: choose another --out "
                "(a bundle directory is replaced, anything else is left alone)")

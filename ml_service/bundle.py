"""The model bundle: what the scoring service needs from a registered version.

A bundle is a directory with the model file (``model.skops``, scikit-learn's
safe serialization as MLflow stored it) and ``metadata.json`` (name, version,
git commit, dataset digest, metrics, feature names, the model file's SHA-256).
It is exported from the registry on the host, so neither the scoring service
nor its image needs MLflow.

Loading a model never runs code from the registry: only the sklearn flavor in
skops format is accepted, its file name must be a plain name inside the
downloaded model, and skops loads it trusting nothing beyond its own defaults
(not the types a model's MLmodel file may list). Pickle and cloudpickle
models, which execute code when unpickled, are refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from diabetes_regression.schema import CONTRACT
from ml_service.errors import MlopsError, UsageError

logger = logging.getLogger(__name__)

MODEL_FILE = "model.skops"
METADATA_FILE = "metadata.json"


@dataclass
class BundleMetadata:
    """Facts about the bundled model, served on ``/metadata``."""

    name: str
    version: int
    sha256: str
    git_commit: str = "unknown"
    dataset_digest: str = ""
    run_id: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    feature_names: list[str] = field(default_factory=list)
    sklearn_version: str = ""

    @classmethod
    def read(cls, directory: Path) -> "BundleMetadata":
        """Read ``metadata.json`` from a bundle directory."""
        return cls(**json.loads((directory / METADATA_FILE).read_text()))

    def write(self, directory: Path) -> Path:
        """Write ``metadata.json`` into ``directory``; return its path."""
        path = directory / METADATA_FILE
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        return path


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checked_model_file(local: Path, what: str) -> tuple[dict, Path]:
    """The skops model file of a model directory downloaded from the registry.

    Args:
        local: The downloaded ``models:/<name>/<version>`` directory.
        what: How to name the model in errors, e.g. ``diabetes-ridge version 3``.

    Returns:
        (the sklearn flavor from MLmodel, the model file's path)

    Raises:
        MlopsError: If it is not an sklearn model in skops format, or its file
            name points anywhere but a plain file inside ``local``.
    """
    import yaml

    try:
        mlmodel = yaml.safe_load((local / "MLmodel").read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise MlopsError(f"{what} has no readable MLmodel file ({exc})") from None
    flavor = (mlmodel.get("flavors") or {}).get("sklearn") or {}
    stored = flavor.get("serialization_format")
    if stored != "skops":
        raise MlopsError(
            f"{what} is stored as {stored or 'something other than an sklearn model'}, not "
            "skops: refusing to load it (pickle formats run code when loaded); register "
            "models with this pipeline"
        )
    name = str(flavor.get("pickled_model") or "")
    path = local / name
    if not name or Path(name).name != name or name in (".", "..") or path.is_symlink() or (
            not path.is_file()):
        raise MlopsError(f"{what}: MLmodel names the model file {name!r}, which is not a plain "
                         "file inside the model: refusing it")
    return flavor, path


def load_skops(path: Path, what: str):
    """Load a skops file trusting only skops' default types.

    Raises:
        MlopsError: If the file holds any other type (it is not loaded at all).
    """
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file
        raise MlopsError(f"{what} is not a readable skops file ({type(exc).__name__}: "
                         f"{exc})") from None
    if untrusted:
        raise MlopsError(f"{what} contains types skops does not trust by default "
                         f"({', '.join(sorted(untrusted)[:5])}): refusing to load it")
    return skops.io.load(path, trusted=[])


def export_bundle(registry, version: int, directory: Path) -> BundleMetadata:
    """Download ``version`` from the registry into ``directory`` as a bundle.

    Args:
        registry: A connected :class:`ml_service.registry.Registry`.
        version: The model version to export.
        directory: Target directory: new, empty, or an earlier bundle (replaced).

    Raises:
        MlopsError: If the version does not exist, or is not a model this
            pipeline would load (see :func:`checked_model_file`, :func:`load_skops`).
        UsageError: If ``directory`` holds anything but an earlier bundle.
    """
    import mlflow.artifacts

    info = registry.get_version(version)
    _check_replaceable(directory)
    what = f"{registry.name} version {version}"
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{registry.name}/{version}", dst_path=tmp
            )
        )
        flavor, model_file = checked_model_file(local, what)
        load_skops(model_file, what)  # a bundle the service would refuse is no bundle
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        shutil.copy2(model_file, directory / MODEL_FILE)

    tags = info.tags
    metadata = BundleMetadata(
        name=registry.name,
        version=int(version),
        sha256=sha256_file(directory / MODEL_FILE),
        git_commit=tags.get("git_commit", "unknown"),
        dataset_digest=tags.get("dataset_digest", ""),
        run_id=info.run_id or "",
        metrics=info.metrics,
        feature_names=CONTRACT.feature_names,
        sklearn_version=flavor.get("sklearn_version", ""),
    )
    metadata.write(directory)
    logger.info("exported %s v%s to %s", registry.name, version, directory)
    return metadata


def _check_replaceable(directory: Path) -> None:
    """Refuse to replace a directory that is not empty and not an earlier bundle."""
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        raise UsageError(f"{directory} exists and is not a directory: choose another --out")
    if directory.is_dir():
        contents = {p.name for p in directory.iterdir()}
        if contents and not contents <= {MODEL_FILE, METADATA_FILE}:
            raise UsageError(
                f"{directory} is not empty and not a model bundle: choose another --out "
                "(a bundle directory is replaced, anything else is left alone)")

"""The model bundle: what the scoring service needs from a registered version.

A bundle is a directory with the model file (``model.skops``, scikit-learn's
safe serialization as MLflow stored it) and ``metadata.json`` (name, version,
git commit, dataset digest, metrics, feature names, the model file's SHA-256).
It is exported from the registry on the host, so neither the scoring service
nor its image needs MLflow.
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


def export_bundle(registry, version: int, directory: Path) -> BundleMetadata:
    """Download ``version`` from the registry into ``directory`` as a bundle.

    Args:
        registry: A connected :class:`ml_service.registry.Registry`.
        version: The model version to export.
        directory: Target directory; replaced if it exists.

    Raises:
        MlopsError: If the version does not exist or was not stored with skops.
    """
    import mlflow.artifacts
    import yaml

    from ml_service.errors import MlopsError

    info = registry.get_version(version)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{registry.name}/{version}", dst_path=tmp
            )
        )
        mlmodel = yaml.safe_load((local / "MLmodel").read_text())
        flavor = mlmodel.get("flavors", {}).get("sklearn", {})
        if flavor.get("serialization_format") != "skops":
            raise MlopsError(
                f"{registry.name} version {version} is not stored in the skops format "
                "the scoring service loads; re-register it with this pipeline"
            )
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        shutil.copy2(local / flavor["pickled_model"], directory / MODEL_FILE)

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

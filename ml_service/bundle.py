"""The model bundle: what the scoring service needs from a registered version.

A bundle is a directory with the model file (``model.skops``, scikit-learn's
safe serialization as MLflow stored it), its compiled form when it has one
(``model.onnx``, checked against it at bundle time) and ``metadata.json`` (name, version,
git commit, dataset digest, metrics, the model file's SHA-256, and from the
model's spec: the data contract, the output method, the prediction range and
example rows). It is exported from the registry on the host
(:func:`ml_service.registry.export.export_bundle`), so neither the scoring
service nor its image needs MLflow or the model package.

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
from dataclasses import asdict, dataclass, field
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ml_service.contract import DataContract
from ml_service.errors import MlopsError
from ml_service.spec import classes_of

logger = logging.getLogger(__name__)

MODEL_FILE = "model.skops"
#: The model's compiled form, when it has one (see ml_service.registry.compiled).
ONNX_FILE = "model.onnx"
#: How closely the compiled form's predictions, and a released service's, must
#: match the registry model's: ``numpy.allclose(served, registry, rtol, atol)``.
PREDICTION_RTOL = 1e-6
PREDICTION_ATOL = 1e-9
METADATA_FILE = "metadata.json"
#: A many-models set's bundle: every partition's model, and the index of their hashes.
SET_FILE = "models.zip"
SET_INDEX_FILE = "index.json"


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
    contract: dict[str, Any] = field(default_factory=dict)
    output: str = "predict"
    prediction_range: list[float] = field(default_factory=lambda: [0.0, 1.0])
    example: list[list[float]] = field(default_factory=list)
    #: Set for a many-models set: ``sha256`` is then that of the models archive.
    partition_keys: list[str] = field(default_factory=list)
    set_index_sha256: str = ""
    example_partition: dict[str, Any] = field(default_factory=dict)
    #: How the service runs the model: ``{"kind": "onnx", "file": "model.onnx",
    #: "sha256": ..., the check's figures}``, or ``{"kind": "sklearn", "reason": ...}``;
    #: empty (scikit-learn) for bundles made before compiled forms.
    runtime: dict[str, Any] = field(default_factory=dict)
    #: Types beyond skops' defaults the model file may hold: the spec's
    #: ``trusted_types``, recorded (and signed) with the bundle.
    trusted_types: list[str] = field(default_factory=list)
    #: A binary classifier's decision threshold (the spec's ``threshold``).
    threshold: float = 0.5

    @property
    def classes(self) -> tuple[float, ...]:
        """A classifier's classes (the contract target's allowed values); empty otherwise."""
        return classes_of(self.data_contract, self.output) if self.contract else ()

    @property
    def runtime_kind(self) -> str:
        """``onnx`` or ``sklearn``: what serves the model, and what the image installs."""
        return str(self.runtime.get("kind", "sklearn"))

    @property
    def model_file(self) -> str:
        """The file ``sha256`` covers."""
        return SET_FILE if self.partition_keys else MODEL_FILE

    @property
    def hashed_files(self) -> list[tuple[str, str]]:
        """(file name, the SHA-256 metadata.json states) of the bundle's model files.

        The model file (or a set's archive), then the ONNX form when the bundle
        has one: the last is the file the service runs.
        """
        files = [(self.model_file, self.sha256)]
        if self.runtime_kind == "onnx":
            files.append((str(self.runtime.get("file", ONNX_FILE)),
                          str(self.runtime.get("sha256", ""))))
        return files

    @classmethod
    def read(cls, directory: Path) -> BundleMetadata:
        """Read ``metadata.json`` from a bundle directory."""
        return cls(**json.loads((directory / METADATA_FILE).read_text()))

    @property
    def data_contract(self) -> DataContract:
        """The model's data contract, as its spec declared it."""
        return DataContract.from_json(self.contract)

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


def checked_model_file(local: Path, what: str) -> tuple[dict[str, Any], Path]:
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


def load_skops(path: Path, what: str, trusted_types: Sequence[str] = ()) -> Any:
    """Load a skops file trusting skops' default types and ``trusted_types`` only.

    Args:
        trusted_types: The spec's ``trusted_types`` (or the signed bundle's copy).

    Raises:
        MlopsError: If the file holds any other type (it is not loaded at all).
    """
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file
        raise MlopsError(f"{what} is not a readable skops file ({type(exc).__name__}: "
                         f"{exc})") from None
    foreign = sorted(set(untrusted) - set(trusted_types))
    if foreign:
        raise MlopsError(f"{what} contains types neither skops' defaults nor the spec's "
                         f"trusted_types allow ({', '.join(foreign[:5])}): refusing to load it")
    return skops.io.load(path, trusted=sorted(untrusted))

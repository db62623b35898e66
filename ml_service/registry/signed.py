"""A registered version as a signed directory: how it is signed, and the one way it is read.

The signed directory of version ``v`` is what ``models:/<name>/<v>`` downloads
(the MLflow model, or a many-models set), plus the run's model card
(``model_card.json``, ``model_card.md``) and ``version.json`` (name, version,
run id), with ``model.sig`` over all of them. The signature and
``version.json`` are kept in the run under ``signature/``. ``version.json``
binds the signature to this name and version: a registry writer who points a
version at another signed run is refused too.

Every loader of a registered version goes through :func:`download_verified`.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_service import signing
from ml_service.errors import MlopsError
from ml_service.registry.versions import VersionStore

if TYPE_CHECKING:
    from ml_service.sets import ModelSet

logger = logging.getLogger(__name__)

ARTIFACT_DIR = "signature"
VERSION_FILE = "version.json"
CARD_DIR = "model_card"


def _download(uri: str | None, directory: Path, **kwargs: Any) -> Path | None:
    import mlflow.artifacts

    try:
        return Path(mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(directory), **kwargs) if uri else
            mlflow.artifacts.download_artifacts(dst_path=str(directory), **kwargs))
    except Exception:  # noqa: BLE001 - missing artifact: MLflow raises several kinds
        return None


def download_files(registry: VersionStore, version: int, target: Path) -> Path:
    """The registered files of ``version`` (``models:/``) in ``target``, as they were logged.

    Raises:
        MlopsError: If the registry cannot give them.
    """
    with tempfile.TemporaryDirectory() as tmp:
        model = _download(f"models:/{registry.name}/{version}", Path(tmp))
        if model is None:
            raise MlopsError(f"{registry.name} version {version}: its files cannot be "
                             "downloaded from the registry")
        shutil.copytree(model, target)
    # Written by MLflow's client into every models:/ download (name and
    # version), not stored in the registry: not part of what is signed.
    (target / "registered_model_meta").unlink(missing_ok=True)
    return target


def _assemble(registry: VersionStore, version: int, directory: Path) -> tuple[Path, str]:
    """Lay out version ``version`` as it is signed, in ``directory``; return (path, run id)."""
    info = registry.get_version(version)
    for part in ("signed", "card", "signature"):  # this module's own folders
        if (directory / part).is_dir():
            shutil.rmtree(directory / part)
    signed = download_files(registry, version, directory / "signed")
    run_id = info.run_id or ""
    if run_id:
        card = _download(None, directory / "card", run_id=run_id, artifact_path=CARD_DIR)
        if card is not None:
            for path in card.iterdir():
                if path.is_file():
                    shutil.copy2(path, signed / path.name)
    return signed, run_id


def sign_version(registry: VersionStore, version: int, files: Path,
                 card: Path | None = None) -> str:
    """Sign ``version`` as the files in ``files`` (and ``card``); return the key id.

    ``files`` is the local folder this process wrote and uploaded (at
    registration) or re-checked (``mlops sign``): never a copy read back from
    the registry, which whoever can write the registry could have swapped
    since. The signature and ``version.json`` go to the run's ``signature/``;
    then the registry's copy is verified against them, so a version whose
    files were changed on the way is refused here, not signed.

    Raises:
        MlopsError: If the registry does not hold exactly what was signed.
    """
    import mlflow

    signer = signing.signer(registry.settings)
    info = registry.get_version(version)
    what = f"{registry.name} version {version}"
    if not info.run_id:
        raise MlopsError(f"{what} has no run to keep its signature in")
    with tempfile.TemporaryDirectory() as tmp:
        signed = Path(tmp) / "signed"
        shutil.copytree(files, signed)
        for path in (card.iterdir() if card is not None else ()):
            if path.is_file():
                shutil.copy2(path, signed / path.name)
        (signed / VERSION_FILE).write_text(json.dumps(
            {"name": registry.name, "version": int(version), "run_id": info.run_id},
            sort_keys=True))
        key = signer.sign(signed)
        out = Path(tmp) / ARTIFACT_DIR
        out.mkdir()
        for name in (signing.SIGNATURE_FILE, VERSION_FILE):
            shutil.copy2(signed / name, out / name)
        client = mlflow.MlflowClient(tracking_uri=registry.settings.resolved_tracking_uri)
        client.log_artifacts(info.run_id, str(out), artifact_path=ARTIFACT_DIR)
        own = Path(tmp) / "own-key"  # the same files, whoever is trusted: loaders check trust
        own.mkdir()
        (own / "signer.pub").write_bytes(signer.public_pem)
        try:
            download_verified(registry, version, Path(tmp) / "check", trusted=own)
        except signing.SignatureError as exc:
            raise MlopsError(f"{what}: the registry does not hold the files that were signed "
                             f"({exc}); it will not be loaded") from None
    registry.set_version_tag(version, "signature.key", key)
    logger.info("signed %s version %s with key %s", registry.name, version, key[:16])
    return key


def download_verified(registry: VersionStore, version: int, directory: Path,
                      trusted: Path | None = None) -> Path:
    """Download ``version`` into ``directory`` and verify its signature; return its folder.

    Nothing is loaded here; the caller loads from the returned folder only
    after this returned.

    Raises:
        SignatureError: If the version is unsigned, signed by a key the
            repository does not trust, changed since signing, or its signature
            belongs to another name or version.
    """
    what = f"{registry.name} version {version}"
    signed, run_id = _assemble(registry, version, directory)
    signature = _download(None, directory / "signature", run_id=run_id,
                          artifact_path=ARTIFACT_DIR) if run_id else None
    if signature is None or not (signature / signing.SIGNATURE_FILE).is_file():
        raise signing.SignatureError(
            f"{what} is not signed (registered before signing, or its signature was removed): "
            f"refusing to load it; if you registered it before signing existed, `make sign "
            f"VERSION={version}` re-checks it the old way and signs it")
    for name in (signing.SIGNATURE_FILE, VERSION_FILE):
        if (signature / name).is_file():
            shutil.copy2(signature / name, signed / name)
    signing.verify(signed, what, trusted or registry.settings.signing_trusted)
    bound = json.loads((signed / VERSION_FILE).read_text())
    if bound.get("name") != registry.name or int(bound.get("version", -1)) != int(version):
        raise signing.SignatureError(
            f"{what} carries the signature of {bound.get('name')} version {bound.get('version')}"
            ": refusing to load it")
    return signed


def download_set(registry: VersionStore, version: int, directory: Path) -> ModelSet:
    """Many-models set ``version``, verified against its signature before anything in it
    is read, then every file against the set's metadata (:class:`ml_service.sets.ModelSet`)."""
    from ml_service.sets import ModelSet

    return ModelSet(download_verified(registry, version, directory), version)

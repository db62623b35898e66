"""`mlops sign` (versions registered before signing) and `mlops signing-key` (a key pair)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ml_service.cli.common import connected, guarded, out
from ml_service.errors import MlopsError, UsageError

app = typer.Typer()


def recheck_unsigned(registry: Any, version: int, directory: Path) -> tuple[str, Path, Path]:
    """The checks loaders made before signatures, on a download of ``version``.

    A model: skops only, skops' default types and the spec's trusted_types
    (nothing from the registry decides what may be loaded); the model card
    against the hash recorded at registration. Returns (what was checked, the model folder, the card
    folder): exactly these files are then signed.

    Raises:
        MlopsError: If a check fails, or the version is a many-models set: a
            set's entries are pickles, and the old checks compared them with
            hashes the registry itself holds, which proves nothing; a set from
            before signing is retrained, not signed.
    """
    from ml_service.bundle import checked_model_file, load_skops
    from ml_service.registry.export import export_card
    from ml_service.registry.signed import download_files

    info = registry.get_version(version)
    what = f"{registry.name} version {version}"
    if info.tags.get("kind") == "model-set" or info.tags.get("set.partitions"):
        raise MlopsError(f"{what} is a many-models set: its entries are pickles that only "
                         "hashes held by the registry vouch for, so it cannot be re-checked; "
                         "retrain it (`make train-many`) to get a signed set")
    local = download_files(registry, version, directory / "model")
    flavor, model_file = checked_model_file(local, what)
    if flavor.get("serialization_format") != "skops":
        raise MlopsError(f"{what} is not a skops model")
    load_skops(model_file, what, registry.trusted_types)
    card_dir = directory / "card"
    card_dir.mkdir()
    card = export_card(info.run_id, info.tags.get("model_card.sha256"), card_dir, what)
    return ("a skops model of default-trusted types"
            + (", its model card" if card else ", no model card"), local, card_dir)


@app.command()
@guarded
def sign(
    version: Annotated[int, typer.Option("--version", help="The version to sign.")],
) -> None:
    """Sign a version registered before signing, after the checks it was loaded with then.

    Refuses a version that already has a signature, valid or not (a bad
    signature means someone changed the version, which re-signing would hide),
    and a many-models set. Signs exactly the files it re-checked.
    """
    import mlflow.artifacts

    from ml_service.registry.signed import ARTIFACT_DIR, sign_version

    _, _, registry = connected()
    info = registry.get_version(version)
    what = f"{registry.name} version {version}"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            mlflow.artifacts.download_artifacts(run_id=info.run_id, artifact_path=ARTIFACT_DIR,
                                                dst_path=str(Path(tmp) / "existing"))
            signed = True
        except Exception:  # noqa: BLE001 - no such artifact
            signed = False
        if signed:
            raise UsageError(f"{what} already has a signature: `mlops verify --version "
                             f"{version}` checks it; a version whose signature fails was "
                             "changed after registration and is not re-signed")
        checked, model_dir, card_dir = recheck_unsigned(registry, version, Path(tmp) / "check")
        key = sign_version(registry, version, model_dir, card_dir)
    out.print(f"signed {what} with key {key[:16]} after re-checking it: {checked}")


@app.command()
@guarded
def verify(
    version: Annotated[Optional[int], typer.Option(
        "--version", help="The version to verify [default: the champion].")] = None,
) -> None:
    """Verify a registered version against its signature and the repository's trusted keys."""
    from ml_service.cli.common import chosen_version
    from ml_service.registry.signed import download_verified
    from ml_service.signing import signature_key

    _, _, registry = connected()
    chosen = chosen_version(registry, version)
    with tempfile.TemporaryDirectory() as tmp:
        signed = download_verified(registry, chosen, Path(tmp))
        key = signature_key(signed)
        files = sum(1 for p in signed.rglob("*") if p.is_file())
    out.print(f"{registry.name} version {chosen}: signature valid ({files} files, "
              f"key {key[:16]})")


@app.command("signing-key")
@guarded
def signing_key(
    private: Annotated[Optional[Path], typer.Option(
        "--private", help="Where to write the private key (outside the repository).")] = None,
    name: Annotated[str, typer.Option(
        "--name", help="File name of the public key in the trusted keys folder.")] = "pipeline",
    ephemeral: Annotated[bool, typer.Option(
        "--ephemeral", help="A key for this job's throw-away registry only (a build's): "
        "trusted beside the repository's keys, in $RUNNER_TEMP, never committed.")] = False,
) -> None:
    """Make an ECDSA P-256 key pair: the private key for a secret, the public one to commit."""
    from ml_service import signing
    from ml_service.settings import Settings

    if ephemeral:
        _ephemeral_key()
        return
    if private is None:
        raise UsageError("--private <file outside the repository> is required (or --ephemeral)")
    if private.exists():
        raise UsageError(f"{private} exists: choose another --private (keys are not replaced)")
    repository = signing.TRUSTED_KEYS.parents[2].resolve()
    if private.resolve().is_relative_to(repository):
        raise UsageError(f"{private} is inside the repository: keep the private key outside it")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise UsageError(f"--name {name!r}: letters, digits, - and _ only")
    trusted = Settings().signing_trusted or signing.TRUSTED_KEYS
    public_path = trusted / f"{name}.pub"
    if public_path.exists():
        raise UsageError(f"{public_path} exists: choose another --name")
    private_pem, public_pem = signing.new_key_pair()
    signing.write_private(private, private_pem)
    trusted.mkdir(parents=True, exist_ok=True)
    public_path.write_bytes(public_pem)
    out.print(f"wrote the private key to {private} (0600) and the public key to {public_path} "
              f"(key {signing.key_id(public_pem)[:16]}).\nCommit {public_path}; store the "
              f"private key as the repository secret MODEL_SIGNING_KEY (gh secret set "
              f"MODEL_SIGNING_KEY < {private}), then delete it here.")


def _ephemeral_key() -> None:
    """A key that lives and is trusted for one job: what a build's fresh registry is signed with.

    The trusted folder is the repository's keys plus this one, so a champion
    restored from the team's registry is still verified against the real keys.
    In Actions the two settings go to $GITHUB_ENV for the later steps.
    """
    import os
    import shutil

    from ml_service import signing
    from ml_service.settings import Settings

    base = Path(os.environ.get("RUNNER_TEMP") or tempfile.mkdtemp()) / "ephemeral-signing"
    if base.exists():
        shutil.rmtree(base)
    trusted = base / "trusted"
    trusted.mkdir(parents=True)
    for path in signing.trusted_keys(Settings().signing_trusted).values():
        shutil.copy2(path, trusted / path.name)
    private_pem, public_pem = signing.new_key_pair()
    signing.write_private(base / "key.pem", private_pem)
    (trusted / "ephemeral.pub").write_bytes(public_pem)
    settings = {"MLOPS_SIGNING_KEY_FILE": str(base / "key.pem"),
                "MLOPS_SIGNING_TRUSTED": str(trusted)}
    github_env = os.environ.get("GITHUB_ENV")
    if github_env:
        with open(github_env, "a") as handle:
            handle.writelines(f"{k}={v}\n" for k, v in settings.items())
    out.print(f"ephemeral signing key {signing.key_id(public_pem)[:16]} for this job, trusted "
              f"with the repository's {len(list(trusted.glob('*.pub'))) - 1} key(s)"
              + ("" if github_env else ":\n" + "\n".join(f"export {k}={v}"
                                                         for k, v in settings.items())))


__all__ = ["app"]

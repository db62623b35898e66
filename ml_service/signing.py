"""Signed models: the pipeline signs what it registers, every loader verifies it first.

Hashes recorded in the registry are no root of trust: whoever can write the
registry can rewrite them. A signature can only be made with the pipeline's
private key, and which public keys are trusted is decided by the repository
(``infra/signing/trusted/*.pub``), never by the registry or an artifact.

The format is OpenSSF model signing (PyPI ``model-signing``): a Sigstore bundle
over a manifest of every file in a directory (SHA-256 per file), written as
``model.sig`` inside that directory and left out of the manifest. Two
directories are signed:

- a registered version, as :mod:`ml_service.registry.signed` lays it out: the
  registered model (or set), its model card and ``version.json`` (name,
  version, run), signed at registration;
- a scoring bundle (model, ONNX form, metadata, card), signed when it is
  exported from a verified version; the image carries it and the trusted keys,
  and the service verifies it before it loads anything.

Keys are ECDSA P-256 (PEM). The private key comes from ``MLOPS_SIGNING_KEY``
(the key's text, e.g. a CI secret) or ``MLOPS_SIGNING_KEY_FILE``; on a laptop,
with neither set, one is made on first use under
``~/.config/mlops-template/`` and its public key is added to the trusted keys
of the working copy (commit it to let others verify what was signed there).
Inside GitHub Actions no key is ever made: a job that must sign needs the
secret.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from ml_service.errors import UsageError

logger = logging.getLogger(__name__)

SIGNATURE_FILE = "model.sig"
#: Where the repository keeps the public keys it trusts (one PEM file each).
TRUSTED_KEYS = Path(__file__).resolve().parents[1] / "infra" / "signing" / "trusted"
DEFAULT_KEY = Path.home() / ".config" / "mlops-template" / "signing-key.pem"


class SignatureError(UsageError):
    """A model is unsigned, signed by an untrusted key, or changed since it was signed."""


def key_id(public_pem: bytes) -> str:
    """The key's id, as model-signing records it: SHA-256 of its PEM public key."""
    return hashlib.sha256(public_pem).hexdigest()


def _public_pem(private_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    pem: bytes = private_key.public_key().public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem


def trusted_keys(directory: Path | None = None) -> dict[str, Path]:
    """The trusted public keys, by key id (``directory``: default the repository's)."""
    from cryptography.hazmat.primitives import serialization

    directory = directory or TRUSTED_KEYS
    keys: dict[str, Path] = {}
    for path in sorted(directory.glob("*.pub")) if directory.is_dir() else []:
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except ValueError as exc:
            raise UsageError(f"{path} is not a PEM public key: {exc}") from None
        pem = key.public_bytes(encoding=serialization.Encoding.PEM,
                               format=serialization.PublicFormat.SubjectPublicKeyInfo)
        keys[key_id(pem)] = path
    return keys


def new_key_pair() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of a new ECDSA P-256 key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return private, _public_pem(key)


def write_private(path: Path, pem: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


class Signer:
    """The pipeline's signing key, from the settings (see the module's docstring)."""

    def __init__(self, key_text: str | None, key_file: Path | None,
                 trusted: Path | None = None):
        from cryptography.hazmat.primitives import serialization

        self.trusted = trusted or TRUSTED_KEYS
        if key_text:
            pem, source = key_text.strip().encode() + b"\n", "MLOPS_SIGNING_KEY"
        elif key_file:
            if not key_file.is_file():
                raise UsageError(f"MLOPS_SIGNING_KEY_FILE={key_file} does not exist")
            pem, source = key_file.read_bytes(), str(key_file)
        elif os.environ.get("GITHUB_ACTIONS") == "true":
            raise UsageError(
                "no signing key in this job: set the repository secret MODEL_SIGNING_KEY "
                "(`make signing-key` makes a key pair) and commit its public key to "
                "infra/signing/trusted/")
        else:
            pem, source = self._local_key(), str(DEFAULT_KEY)
        try:
            self._key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"the signing key from {source} is not an unencrypted PEM "
                             f"private key: {exc}") from None
        self.public_pem = _public_pem(self._key)
        self.id = key_id(self.public_pem)
        self._pem = pem

    def _local_key(self) -> bytes:
        """This machine's key: made on first use, its public key trusted in the working copy."""
        if DEFAULT_KEY.is_file():
            return DEFAULT_KEY.read_bytes()
        private, public = new_key_pair()
        write_private(DEFAULT_KEY, private)
        self.trusted.mkdir(parents=True, exist_ok=True)
        target = self.trusted / f"local-{key_id(public)[:12]}.pub"
        target.write_bytes(public)
        logger.warning("made a signing key for this machine in %s and trusted its public key "
                       "in %s: commit that file to let others verify models signed here",
                       DEFAULT_KEY, target)
        return private

    def sign(self, directory: Path) -> str:
        """Sign every file of ``directory`` into ``directory/model.sig``; return the key id."""
        from model_signing import hashing, signing

        with tempfile.TemporaryDirectory() as tmp:
            key_path = Path(tmp) / "key.pem"
            write_private(key_path, self._pem)
            config = signing.Config().use_elliptic_key_signer(  # type: ignore[no-untyped-call]
                private_key=key_path)
            files = hashing.Config()  # type: ignore[no-untyped-call]
            config.set_hashing_config(files.set_ignored_paths(
                paths=[SIGNATURE_FILE], ignore_git_paths=False))
            config.sign(directory, directory / SIGNATURE_FILE)
        (directory / SIGNATURE_FILE).chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP
                                           | stat.S_IROTH)
        return self.id


def signer(settings: object) -> Signer:
    """The :class:`Signer` of ``settings`` (``signing_key``, ``signing_key_file``)."""
    secret = getattr(settings, "signing_key", None)
    return Signer(secret.get_secret_value() if secret else None,
                  getattr(settings, "signing_key_file", None),
                  getattr(settings, "signing_trusted", None))


def signature_key(directory: Path) -> str:
    """The key id a directory's signature names (its hint), '' if none is readable."""
    try:
        bundle = json.loads((directory / SIGNATURE_FILE).read_text())
        return str(bundle["verificationMaterial"]["publicKey"]["hint"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def verify(directory: Path, what: str, trusted: Path | None = None) -> str:
    """Check ``directory`` against its signature and the trusted keys; return the key id.

    Nothing in ``directory`` should be loaded before this returns.

    Raises:
        SignatureError: If there is no signature, it names a key the repository
            does not trust, or a file was added, removed or changed since signing.
    """
    from model_signing import hashing, verifying

    trusted = trusted or TRUSTED_KEYS
    if not (directory / SIGNATURE_FILE).is_file():
        raise SignatureError(f"{what} is not signed (no {SIGNATURE_FILE}): refusing to load it")
    keys = trusted_keys(trusted)
    hint = signature_key(directory)
    if hint not in keys:
        raise SignatureError(
            f"{what} is signed by key {hint[:16] or '(unreadable)'}, which the repository does "
            f"not trust ({len(keys)} trusted key(s) in {trusted}): refusing to load it")
    # Every file counts: model-signing's default would skip .git*, .github at the top.
    files = hashing.Config().set_ignored_paths(  # type: ignore[no-untyped-call]
        paths=[SIGNATURE_FILE], ignore_git_paths=False)
    try:
        verifying.Config().use_elliptic_key_verifier(  # type: ignore[no-untyped-call]
            public_key=keys[hint]).set_hashing_config(files).verify(
            directory, directory / SIGNATURE_FILE)
    except Exception as exc:  # noqa: BLE001 - model-signing raises ValueError and crypto errors
        raise SignatureError(f"{what} does not match its signature: {_short(exc)}; "
                             "refusing to load it") from None
    return hint


def _short(exc: Exception) -> str:
    """model-signing's mismatch message without the digests' bytes."""
    text = str(exc)
    if "Signature mismatch" in text:
        import re

        # The message is a list's repr: a quote may come escaped (\\').
        found = re.findall(r"(Extra files found|Missing files)|Hash mismatch for \\?'([^'\\]+)",
                           text)
        names = [kind or f"Hash mismatch for '{name}'" for kind, name in found]
        return "; ".join(dict.fromkeys(names)) or "the files differ"
    return f"{type(exc).__name__}: {text[:300]}"

"""Signing keys and signatures (ml_service.signing), without a registry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ml_service import signing
from ml_service.errors import UsageError
from ml_service.signing import SignatureError, Signer


@pytest.fixture
def keys(tmp_path) -> tuple[Path, Path]:
    """(a private key file, a folder trusting its public key)."""
    private, public = signing.new_key_pair()
    signing.write_private(tmp_path / "key.pem", private)
    (tmp_path / "trusted").mkdir()
    (tmp_path / "trusted" / "ci.pub").write_bytes(public)
    return tmp_path / "key.pem", tmp_path / "trusted"


def model_dir(root: Path) -> Path:
    directory = root / "model"
    (directory / "sub").mkdir(parents=True)
    (directory / "model.skops").write_bytes(b"weights")
    (directory / "sub" / "metadata.json").write_text("{}")
    return directory


def test_a_signed_directory_verifies_wherever_it_is_copied(keys, tmp_path):
    import shutil

    key, trusted = keys
    directory = model_dir(tmp_path)
    key_id = Signer(None, key).sign(directory)
    assert signing.signature_key(directory) == key_id  # model-signing's hint is our id
    assert key_id in signing.trusted_keys(trusted)
    copy = tmp_path / "elsewhere" / "bundle"
    shutil.copytree(directory, copy)
    assert signing.verify(copy, "the copy", trusted) == key_id
    assert (copy / signing.SIGNATURE_FILE).stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("change, message", [
    (lambda d: (d / "model.skops").write_bytes(b"other"), "Hash mismatch for 'model.skops'"),
    (lambda d: (d / "sub" / "metadata.json").unlink(), "Missing files"),
    (lambda d: (d / "extra.py").write_text("import os"), "Extra files found"),
    (lambda d: (d / ".gitattributes").write_text("x"), "Extra files found"),  # no file skipped
    (lambda d: (d / ".github").mkdir() or (d / ".github" / "a").write_text("x"),
     "Extra files found"),
    (lambda d: (d / signing.SIGNATURE_FILE).unlink(), r"is not signed \(no model.sig\)"),
    (lambda d: (d / signing.SIGNATURE_FILE).write_text("{}"),
     r"signed by key \(unreadable\), which the repository does not trust"),
])
def test_any_change_after_signing_is_refused(keys, tmp_path, change, message):
    key, trusted = keys
    directory = model_dir(tmp_path)
    Signer(None, key).sign(directory)
    change(directory)
    with pytest.raises(SignatureError, match=message) as caught:
        signing.verify(directory, "model v1", trusted)
    assert caught.value.exit_code == 2
    assert str(caught.value).startswith("model v1 ")


def test_a_forged_signature_naming_a_trusted_key_is_refused(keys, tmp_path):
    """The hint names a trusted key, but another key made the signature."""
    key, trusted = keys
    directory = model_dir(tmp_path)
    other = tmp_path / "other.pem"
    signing.write_private(other, signing.new_key_pair()[0])
    Signer(None, other).sign(directory)
    bundle = json.loads((directory / signing.SIGNATURE_FILE).read_text())
    bundle["verificationMaterial"]["publicKey"]["hint"] = next(iter(signing.trusted_keys(trusted)))
    (directory / signing.SIGNATURE_FILE).write_text(json.dumps(bundle))
    with pytest.raises(SignatureError, match="does not match its signature: InvalidSignature"):
        signing.verify(directory, "model v1", trusted)


def test_only_the_repositorys_keys_are_trusted(keys, tmp_path):
    key, _ = keys
    directory = model_dir(tmp_path)
    Signer(None, key).sign(directory)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SignatureError, match=r"does not trust \(0 trusted key\(s\)"):
        signing.verify(directory, "model v1", empty)
    (empty / "broken.pub").write_text("not a key")
    with pytest.raises(UsageError, match="broken.pub is not a PEM public key"):
        signing.trusted_keys(empty)


def test_the_key_comes_from_the_secret_text_or_a_file(keys, tmp_path, monkeypatch):
    key, trusted = keys
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    from_text = Signer(key.read_text(), None)
    assert from_text.id == Signer(None, key).id
    with pytest.raises(UsageError, match="no signing key in this job: set the repository "
                                         "secret MODEL_SIGNING_KEY"):
        Signer(None, None)
    with pytest.raises(UsageError, match="from MLOPS_SIGNING_KEY is not an unencrypted PEM"):
        Signer("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----", None)
    with pytest.raises(UsageError, match="does not exist"):
        Signer(None, tmp_path / "missing.pem")


def test_a_laptop_without_a_key_makes_one_and_trusts_it_in_the_working_copy(
        tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setattr(signing, "DEFAULT_KEY", tmp_path / "home" / "signing-key.pem")
    trusted = tmp_path / "repo" / "trusted"
    first = Signer(None, None, trusted)
    assert signing.DEFAULT_KEY.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in trusted.glob("*.pub")] == [f"local-{first.id[:12]}.pub"]
    again = Signer(None, None, trusted)  # the same key next time, nothing more trusted
    assert again.id == first.id and len(list(trusted.glob("*.pub"))) == 1


def test_signing_key_writes_a_pair_and_keeps_the_private_key_out_of_the_repository(
        tmp_path, monkeypatch):
    from ml_service.cli import app

    monkeypatch.setenv("MLOPS_SIGNING_TRUSTED", str(tmp_path / "trusted"))
    runner = CliRunner()
    inside = signing.TRUSTED_KEYS.parents[2] / "leaked.pem"
    result = runner.invoke(app, ["signing-key", "--private", str(inside)])
    assert result.exit_code == 2 and "inside the repository" in result.stderr
    assert not inside.exists()
    result = runner.invoke(app, ["signing-key", "--private", str(tmp_path / "k.pem"),
                                 "--name", "team"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    public = tmp_path / "trusted" / "team.pub"
    assert Signer(None, tmp_path / "k.pem").id in signing.trusted_keys(public.parent)
    assert "gh secret set MODEL_SIGNING_KEY" in result.output
    again = runner.invoke(app, ["signing-key", "--private", str(tmp_path / "k.pem")])
    assert again.exit_code == 2 and "keys are not replaced" in again.stderr


def test_an_ephemeral_key_is_trusted_beside_the_repositorys_keys_for_one_job(
        keys, tmp_path, monkeypatch):
    from ml_service.cli import app

    _, trusted = keys
    github_env = tmp_path / "github_env"
    monkeypatch.setenv("MLOPS_SIGNING_TRUSTED", str(trusted))
    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path / "runner"))
    monkeypatch.setenv("GITHUB_ENV", str(github_env))
    result = CliRunner().invoke(app, ["signing-key", "--ephemeral"])
    assert result.exit_code == 0, result.output
    assert "trusted with the repository's 1 key(s)" in result.output
    settings = dict(line.split("=", 1) for line in github_env.read_text().splitlines())
    job_trusted = Path(settings["MLOPS_SIGNING_TRUSTED"])
    assert job_trusted.is_relative_to(tmp_path / "runner")
    ephemeral = Signer(None, Path(settings["MLOPS_SIGNING_KEY_FILE"]))
    assert set(signing.trusted_keys(job_trusted)) == \
        set(signing.trusted_keys(trusted)) | {ephemeral.id}
    assert os.stat(settings["MLOPS_SIGNING_KEY_FILE"]).st_mode & 0o777 == 0o600

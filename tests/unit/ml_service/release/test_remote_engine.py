"""Installing the SSH identity of an ssh:// DOCKER_HOST from CI secrets."""

from __future__ import annotations

import stat

import paramiko
import pytest

from ml_service.errors import UsageError
from ml_service.release.remote_engine import install_identity
from tests.servers import ssh_keypair as keypair


@pytest.fixture
def host_key() -> str:
    return keypair()[1]


def test_nothing_is_installed_for_a_local_or_tcp_engine(tmp_path):
    for docker_host in (None, "unix:///var/run/docker.sock", "tcp://10.0.0.5:2376"):
        assert "no SSH identity to install" in install_identity(docker_host, None, None, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_key_known_host_and_config_are_installed_private_and_idempotent(tmp_path, host_key):
    private, _ = keypair()
    known = f"[prod.example]:2222 {host_key}\r\n"  # pasted with CRLF
    ssh_dir = tmp_path / ".ssh"
    for _ in range(2):
        said = install_identity("ssh://deploy@prod.example:2222", private, known, ssh_dir)
    assert "[prod.example]:2222" in said
    key_file = ssh_dir / "mlops-docker-prod.example"
    for path in (key_file, ssh_dir / "known_hosts", ssh_dir / "config"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(ssh_dir.stat().st_mode) == 0o700
    paramiko.PKey.from_path(key_file)
    assert (ssh_dir / "known_hosts").read_text().count("prod.example") == 1
    config = paramiko.SSHConfig.from_path(str(ssh_dir / "config")).lookup("prod.example")
    assert config["identityfile"] == [str(key_file)]
    assert (ssh_dir / "config").read_text().count("Host prod.example") == 1


def test_in_actions_the_private_key_goes_under_runner_temp_not_home(tmp_path, host_key):
    """A self-hosted runner keeps its home between jobs; the runner empties $RUNNER_TEMP."""
    ssh_dir, key_dir = tmp_path / "home" / ".ssh", tmp_path / "runner-temp" / "ssh"
    install_identity("ssh://deploy@prod.example", keypair()[0], f"prod.example {host_key}",
                     ssh_dir, key_dir)
    key_file = key_dir / "mlops-docker-prod.example"
    paramiko.PKey.from_path(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    assert sorted(p.name for p in ssh_dir.iterdir()) == ["config", "known_hosts"]
    config = paramiko.SSHConfig.from_path(str(ssh_dir / "config")).lookup("prod.example")
    assert config["identityfile"] == [str(key_file)]


def test_an_existing_ssh_config_is_kept(tmp_path, host_key):
    ssh_dir = tmp_path / ".ssh"
    ssh_dir.mkdir()
    (ssh_dir / "config").write_text("Host other\n    User me\n")
    install_identity("ssh://deploy@prod.example", keypair()[0], f"prod.example {host_key}",
                     ssh_dir)
    assert "Host other\n    User me\n" in (ssh_dir / "config").read_text()


@pytest.mark.parametrize("key, known, expected", [
    ("", "prod.example KEY", "DOCKER_SSH_KEY is empty"),
    ("KEY", "", "never trusted on first use"),
    ("KEY", "other.example KEY", "has no key for prod.example"),
    ("not a key", "prod.example KEY", "not a usable private key"),
])
def test_missing_or_wrong_secrets_are_clear_errors(tmp_path, host_key, key, known, expected):
    key = keypair()[0] if key == "KEY" else key
    known = known.replace("KEY", host_key)
    with pytest.raises(UsageError, match=expected):
        install_identity("ssh://deploy@prod.example", key, known, tmp_path / ".ssh")
    assert not (tmp_path / ".ssh" / "mlops-docker-prod.example").exists()

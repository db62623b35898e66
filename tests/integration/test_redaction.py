"""No command prints the credentials of MLFLOW_TRACKING_URI (security review, section 3)."""

from __future__ import annotations

import pytest

from tests.servers import free_port

PASSWORD = "s3cret-pw-7f2a"


@pytest.fixture
def credentialed(cli, monkeypatch):
    """A tracking URI with user and password, pointing at a port nobody listens on."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:{PASSWORD}@127.0.0.1:{free_port()}/")
    monkeypatch.setenv("MLOPS_SERVER_TIMEOUT", "2")
    return cli


@pytest.mark.parametrize("args", [
    ("status",), ("run",), ("bundle", "--out", "b"), ("card", "--version", "1"),
    ("store-restore",), ("status", "--json-out", "status.json"),
])
def test_no_command_prints_the_tracking_uris_credentials(credentialed, workdir, args):
    result = credentialed(*args)
    shown = result.output + (result.stderr or "")
    assert PASSWORD not in shown and "alice" not in shown, shown
    assert "http://***@127.0.0.1:" in shown, shown
    written = workdir / "status.json"
    assert not written.exists() or PASSWORD not in written.read_text()

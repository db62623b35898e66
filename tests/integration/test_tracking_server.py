"""The same pipeline against a real `mlflow server` on a loopback port.

The server has its own SQLite backend and proxies artifacts (``mlflow-artifacts:``),
as a team server would; the pipeline only sees MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
import requests
from mlflow import MlflowClient

pytestmark = pytest.mark.server

STARTUP_DEADLINE = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """Start `mlflow server` on 127.0.0.1 and yield its URI; stop it afterwards."""
    root = tmp_path_factory.mktemp("server")
    port = free_port()
    log = (root / "server.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_DEADLINE
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited:\n{(root / 'server.log').read_text()[-3000:]}")
            try:
                if requests.get(f"{uri}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not healthy after {STARTUP_DEADLINE:.0f}s")
            time.sleep(0.5)
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_the_pipeline_registers_and_gates_on_a_tracking_server(cli, monkeypatch, mlflow_server):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLOPS_MODEL_NAME", "diabetes-ridge-server-test")

    result, summary = cli.run()
    assert result.exit_code == 0, result.output
    assert summary["registered"] is True and summary["version"] == 1
    assert mlflow_server in result.stdout

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    version = client.get_model_version_by_alias("diabetes-ridge-server-test", "champion")
    assert version.version == "1" and version.run_id == summary["run_id"]
    run = client.get_run(summary["run_id"])
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
    assert not (cli.directory / ".mlflow").exists()  # nothing fell back to the embedded store

    result, summary = cli.run()
    assert result.exit_code == 0 and summary["registered"] is False
    assert summary["champion"] == pytest.approx(summary["candidate"])  # champion loaded back

    status = cli("status")
    assert status.exit_code == 0 and "champion" in status.stdout

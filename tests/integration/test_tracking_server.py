"""The same pipeline against a real `mlflow server` on a loopback port.

The server has its own SQLite backend and proxies artifacts (``mlflow-artifacts:``),
as a team server would; the pipeline only sees MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from tests.servers import MlflowServer

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on 127.0.0.1 with a SQLite backend; yields its URI."""
    root = tmp_path_factory.mktemp("server")
    server = MlflowServer(root, f"sqlite:///{root / 'mlflow.db'}")
    yield server.uri
    server.close()


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

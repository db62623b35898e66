"""Team mode: the pipeline against `mlflow server` on a real PostgreSQL backend.

The server proxies artifacts (``mlflow-artifacts:``); the pipeline only sees
MLFLOW_TRACKING_URI.

Includes the race the registry lock exists for: pipelines started at the same
time must neither register the same candidate twice nor leave `champion` on
the worse model.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
from mlflow import MlflowClient

from tests.conftest import DATA, REPO, write_config


def start_run(tmp_path, server: str, model: str, index: int, *args: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": server,
        "MLOPS_MODEL_NAME": model,
        "MLOPS_EXPERIMENT_NAME": model,
        "MLOPS_DATA_PATH": str(DATA),
        "MLOPS_CACHE_DIR": str(tmp_path / f"cache{index}"),
        "MLOPS_REPORTS_DIR": str(tmp_path / f"reports{index}"),
    }
    return subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "mlops"), "run", "--json-out",
         str(tmp_path / f"result{index}.json"), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def finish(tmp_path, processes) -> list[dict]:
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert [p.returncode for p in processes] == [0] * len(processes), outputs
    return [json.loads((tmp_path / f"result{i}.json").read_text())
            for i in range(len(processes))]


def test_the_pipeline_registers_and_gates_on_a_postgresql_backed_server(
    cli, monkeypatch, team_server
):
    model = f"team-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team_server)
    monkeypatch.setenv("MLOPS_MODEL_NAME", model)
    result, summary = cli.run()
    assert result.exit_code == 0 and summary["registered"] and summary["version"] == 1
    assert team_server in result.stdout

    client = MlflowClient(tracking_uri=team_server, registry_uri=team_server)
    version = client.get_model_version_by_alias(model, "champion")
    assert version.version == "1" and version.run_id == summary["run_id"]
    run = client.get_run(summary["run_id"])
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
    assert not (cli.directory / ".mlflow").exists()  # nothing fell back to the embedded store

    result, summary = cli.run()
    assert result.exit_code == 0 and not summary["registered"]
    assert summary["champion"] == pytest.approx(summary["candidate"])  # champion loaded back
    assert "champion" in cli("status").stdout


def test_two_identical_pipelines_started_together_register_once(tmp_path, team_server):
    model = f"team-race-{uuid.uuid4().hex[:6]}"
    results = finish(tmp_path, [start_run(tmp_path, team_server, model, i) for i in range(2)])
    assert sorted(r["registered"] for r in results) == [False, True]
    loser = next(r for r in results if not r["registered"])
    assert "identical to registered version 1" in loser["reason"]
    client = MlflowClient(tracking_uri=team_server, registry_uri=team_server)
    assert len(client.search_model_versions(f"name = '{model}'")) == 1
    assert not client.search_registered_models(f"name = '{model}--lock'")  # released


def test_a_worse_and_a_better_pipeline_together_leave_champion_on_the_better(
    tmp_path, team_server
):
    model = f"team-pair-{uuid.uuid4().hex[:6]}"
    weak = write_config(tmp_path, "weak.yaml", alpha=1000.0)
    processes = [start_run(tmp_path, team_server, model, 0, "--config", str(weak)),
                 start_run(tmp_path, team_server, model, 1)]
    weak_result, strong_result = finish(tmp_path, processes)
    client = MlflowClient(tracking_uri=team_server, registry_uri=team_server)
    champion = client.get_model_version_by_alias(model, "champion")
    assert strong_result["registered"]
    assert int(champion.version) == strong_result["version"]
    assert float(champion.tags["metric.rmse"]) < 50.5
    if weak_result["registered"]:  # it won the race, then lost the title
        assert weak_result["version"] < strong_result["version"]


def test_the_team_compose_file_runs_mlflow_on_postgresql_with_the_locked_versions():
    import re

    import yaml

    compose = yaml.safe_load((REPO / "infra" / "mlflow" / "compose.yaml").read_text())
    postgres, mlflow = compose["services"]["postgres"], compose["services"]["mlflow"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert mlflow["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    command = " ".join(mlflow["command"])
    # The database password is on no command line: the URI and PGPASSWORD are environment.
    for service in compose["services"].values():
        assert "PASSWORD" not in " ".join(service.get("command", []))
        assert "PASSWORD" not in " ".join(service["healthcheck"]["test"])
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"] == \
        "postgresql://mlflow@postgres:5432/mlflow"
    assert mlflow["environment"]["PGPASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert "--artifacts-destination=/mlartifacts" in command
    assert set(compose["volumes"]) == {"pgdata", "artifacts", "auth"}
    # Not open: basic auth with a required admin password, loopback only.
    assert "--app-name=basic-auth" in command
    assert mlflow["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"].startswith(
        "${MLFLOW_ADMIN_PASSWORD:?")
    assert mlflow["ports"] == ["127.0.0.1:5000:5000"]
    assert "./basic_auth.ini:/config/basic_auth.ini:ro" in mlflow["volumes"]

    lock = (REPO / "uv.lock").read_text()
    dockerfile = (REPO / "infra" / "mlflow" / "Dockerfile").read_text()

    def locked(name: str) -> str:
        return re.search(rf'name = "{name}"\nversion = "([^"]+)"', lock).group(1)

    assert f"MLFLOW_VERSION={locked('mlflow')}" in dockerfile
    assert f"psycopg[binary]=={locked('psycopg')}" in dockerfile
    assert f"flask-wtf=={locked('flask-wtf')}" in dockerfile


def test_the_team_servers_auth_config_refuses_anonymous_clients_and_serves_users(
    tmp_path, cli, monkeypatch
):
    """infra/mlflow/basic_auth.ini on a real `mlflow server --app-name basic-auth`."""
    import requests

    from tests.servers import MlflowServer

    ini = (REPO / "infra" / "mlflow" / "basic_auth.ini").read_text()
    config = tmp_path / "basic_auth.ini"
    config.write_text(ini.replace("sqlite:////mlauth/basic_auth.db",
                                  f"sqlite:///{tmp_path / 'auth.db'}"))
    server = MlflowServer(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}",
                          extra_args=("--app-name", "basic-auth"),
                          env={"MLFLOW_AUTH_CONFIG_PATH": str(config),
                               "MLFLOW_AUTH_ADMIN_PASSWORD": "Team-Admin-Pass-42",
                               "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-key"})
    try:
        search = f"{server.uri}/api/2.0/mlflow/experiments/search?max_results=1"
        assert requests.get(search, timeout=10).status_code == 401
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        result, _ = cli.run()
        assert result.exit_code == 1
        assert "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in result.stderr
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "Team-Admin-Pass-42")
        result, summary = cli.run()
        assert result.exit_code == 0 and summary["registered"], result.output
    finally:
        server.close()

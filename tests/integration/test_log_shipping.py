"""Scoring logs on object storage: shipped by the service, read by drift and collect.

Against a real Azure Blob storage emulator (Azurite, from npm), through the
same fsspec/adlfs code a deployment uses; skipped without Azurite unless
REQUIRE_AZURITE=1.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from diabetes_regression.schema import CONTRACT
from diabetes_regression.spec import SPEC
from ml_service.serving.scoring_log import Batch, ScoringLog, now_iso, read_logs
from ml_service.serving import create_app
from ml_service.settings import Settings
from tests.conftest import DATA, REPO, model_settings
from tests.integration.test_monitoring import registered, shifted  # noqa: F401 - fixture
from tests.integration.test_serving import ROW, bundle  # noqa: F401 - fixture
from tests.servers import Azurite

NAMES = CONTRACT.feature_names


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    server = Azurite(tmp_path_factory.mktemp("azurite"))
    yield server
    server.close()


@pytest.fixture
def storage(azurite, monkeypatch) -> str:
    """A fresh blob container; its az:// URI, with the credentials in the environment."""
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    container = f"logs{uuid.uuid4().hex[:12]}"
    azurite.filesystem().mkdir(container)
    return f"az://{container}/production"


def stored(azurite, uri: str) -> list[str]:
    return azurite.filesystem().glob(uri.removeprefix("az://") + "/scoring-*.jsonl")


def local_files(directory) -> list:
    return sorted(directory.glob("scoring-*.jsonl"))


def test_the_service_ships_every_closed_file_and_keeps_none_it_uploaded(
    bundle, tmp_path, storage, azurite  # noqa: F811
):
    directory, _ = bundle
    settings = Settings(bundle_dir=directory, scoring_log_dir=tmp_path / "log",
                        scoring_log_uri=storage, scoring_log_max_bytes=8192)
    sent = 0
    with TestClient(create_app(settings)) as client:
        for size in [1, 5, 20] * 20:
            assert client.post("/score", json={"data": [ROW] * size}).status_code == 200
            sent += size
        # Size rotation ships while the service runs, not only at shutdown.
        deadline = time.monotonic() + 20
        while not stored(azurite, storage) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stored(azurite, storage), "nothing shipped before shutdown"
        metrics = client.get("/metrics").text
    assert "scoring_log_files_shipped" in metrics
    # Shutdown drained the queue, closed the last file and shipped it.
    assert local_files(tmp_path / "log") == []
    assert len(stored(azurite, storage)) > 2
    logged = read_logs(storage)
    assert len(logged) == sent
    assert set(logged["model_version"]) == {7}
    assert list(logged.iloc[0][NAMES]) == ROW


def test_a_quiet_service_still_ships_when_the_file_reaches_its_age_limit(
    tmp_path, storage, azurite
):
    log = ScoringLog(tmp_path, NAMES, "m", 1, ship_to=storage, max_age=0.5)
    assert log.submit(Batch("only", now_iso(), np.ones((3, 10)), np.arange(3.0)))
    deadline = time.monotonic() + 20
    while not stored(azurite, storage) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(stored(azurite, storage)) == 1 and local_files(tmp_path) == []
    log.close()
    assert len(read_logs(storage)) == 3


def test_a_refused_upload_loses_nothing_and_is_shipped_after_a_restart(
    tmp_path, azurite, monkeypatch
):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    container = f"later{uuid.uuid4().hex[:12]}"
    uri = f"az://{container}/production"  # the container does not exist yet
    log = ScoringLog(tmp_path, NAMES, "m", 1, ship_to=uri, max_bytes=4096)
    for i in range(30):
        assert log.submit(Batch(f"r{i}", now_iso(), np.ones((4, 10)), np.arange(4.0)))
    log.close()
    assert log.shipper.failures >= 1 and log.shipper.files_shipped == 0
    kept = local_files(tmp_path)
    assert kept and len(read_logs(tmp_path)) == 120  # all still on the volume

    azurite.filesystem().mkdir(container)  # the storage is fixed
    restarted = ScoringLog(tmp_path, NAMES, "m", 1, ship_to=uri)
    restarted.close()
    assert restarted.shipper.files_shipped == len(kept)
    assert local_files(tmp_path) == []
    assert len(read_logs(uri)) == 120


def serve_to_storage(workdir, frame: pd.DataFrame, uri: str) -> list[tuple[str, int]]:
    """Score ``frame`` through the app with the log shipped to ``uri``; (request id, rows)."""
    from ml_service.registry.export import export_bundle
    from ml_service.registry import connect

    registry = connect(model_settings())
    export_bundle(registry, registry.alias_version("champion"), workdir / "bundle", SPEC)
    app = create_app(Settings(bundle_dir=workdir / "bundle", scoring_log_dir=workdir / "log",
                              scoring_log_uri=uri))
    ids = []
    with TestClient(app) as client:
        for start in range(0, len(frame), 1):
            rows = frame.iloc[start:start + 1][NAMES].values.tolist()
            response = client.post("/score", json={"data": rows})
            ids.append((response.json()["request_id"], len(rows)))
    return ids


def test_drift_and_collect_read_the_logs_from_storage_as_the_monitor_job_does(
    registered, workdir, storage  # noqa: F811
):
    sample = shifted(pd.read_csv(DATA).sample(300, replace=True, random_state=5))
    ids = serve_to_storage(workdir, sample, storage)
    assert local_files(workdir / "log") == []  # the runner sees only the storage

    result = registered("drift", "--logs", storage)
    assert result.exit_code == 4 and "bmi" in result.stderr, result.output

    # monitor.yml: the URI comes from a variable, no --logs.
    outputs = workdir / "outputs.txt"
    env = {**os.environ, "MLOPS_SCORING_LOG_URI": storage, "MLOPS_SCORING_LOG_DIR": ""}
    made = subprocess.run(
        ["make", "-C", str(REPO), "drift", f"OUTPUTS_OUT={outputs}",
         "ARGS=--no-fail --missing-ok"], env=env, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    assert outputs.read_text() == "drifted=true\n"

    pd.DataFrame({"request_id": [i for i, _ in ids], "target": 150.0}).to_csv(
        workdir / "truth.csv", index=False)
    result = registered("collect", "--logs", storage, "--outcomes", str(workdir / "truth.csv"),
                        "--out", str(workdir / "new.csv"), "--base", str(DATA))
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(workdir / "new.csv")) == 442 + 300


def test_storage_that_refuses_the_credentials_is_one_clear_error(
    registered, workdir, azurite, storage, monkeypatch  # noqa: F811
):
    wrong = azurite.connection_string.replace("AccountKey=Eby8", "AccountKey=AAAA")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", wrong)
    result = registered("drift", "--logs", storage)
    assert result.exit_code == 1
    assert f"cannot read the scoring log at {storage}" in result.stderr
    assert "Traceback" not in result.output


def test_a_missing_container_is_a_usage_error_not_zero_rows(registered, workdir,  # noqa: F811
                                                            azurite, monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    result = registered("drift", "--logs", "az://no-such-container/production")
    assert result.exit_code == 2, result.output
    assert "bucket or container not found: az://no-such-container/production" in result.stderr

"""Shadow scoring: production copies its requests to a challenger (a real service on
127.0.0.1), off the response path, and compares the answers in its metrics.

On the cluster, with `mlops shadow` and Prometheus: tests/e2e/test_kubernetes.py.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from ml_service.serving.app import create_app
from ml_service.serving.shadow import read_target
from ml_service.settings import Settings
from tests.conftest import DATA, fit, write_bundle
from tests.servers import free_port, wait_for_http

FEATURES = pd.read_csv(DATA).drop(columns="target")
ROWS = FEATURES.head(40).to_numpy().tolist()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    data = pd.read_csv(DATA)
    made = {}
    for version, alpha in ((7, 1.0), (8, 1000.0)):  # 8: a challenger predicting about the mean
        directory = tmp_path_factory.mktemp(f"bundle-{version}")
        model = fit(data, {"alpha": alpha})
        write_bundle(directory, model, runtime="onnx", version=version, git_commit="abc123",
                     dataset_digest="d1g3st", metrics={"rmse": 50.0})
        made[version] = (directory, model)
    return made


@pytest.fixture(scope="module")
def challenger(bundles):
    """Version 8, served as the image serves it, on a free port of 127.0.0.1."""
    port = free_port()
    env = {**os.environ, "MLOPS_BUNDLE_DIR": str(bundles[8][0]), "MLOPS_SERVE_PORT": str(port),
           "MLOPS_SERVE_HOST": "127.0.0.1", "MLOPS_SCORING_LOG_DIR": ""}
    process = subprocess.Popen([sys.executable, "-m", "ml_service.serving"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    assert wait_for_http(f"{url}/health", process, 60), "the challenger did not start"
    yield url
    process.terminate()
    process.wait(timeout=30)


def production(bundles, shadow_file, log_dir=None):
    return TestClient(create_app(Settings(bundle_dir=bundles[7][0], shadow_file=shadow_file,
                                          scoring_log_dir=log_dir)))


def metric(client, name: str, **labels) -> float:
    """The value of one sample of production's /metrics (0 if absent)."""
    text = client.get("/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + wanted + '}') if wanted else ''} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def wait_for(check, seconds: float = 15.0) -> bool:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if check():
            return True
        time.sleep(0.1)
    return False


def point_at(path, url: str, **more) -> None:
    path.write_text(json.dumps({"url": url, "version": 8, **more}))


def test_every_request_is_copied_to_the_shadow_and_compared(bundles, challenger, tmp_path):
    shadow_file, logs = tmp_path / "shadow.json", tmp_path / "logs"
    point_at(shadow_file, challenger, tolerance=5.0)
    with production(bundles, shadow_file, logs) as client:
        assert wait_for(lambda: client.app.state.mirror.target is not None)
        answers = [client.post("/score", json={"data": [row]}).json() for row in ROWS]
        assert wait_for(lambda: metric(client, "scoring_shadow_requests_total",
                                       outcome="answered") == len(ROWS))
        # Production's answers are production's: version 7, its model's predictions.
        assert {a["model"]["version"] for a in answers} == {7}
        expected = bundles[7][1].predict(FEATURES.head(40))
        np.testing.assert_allclose([a["result"][0] for a in answers], expected)
        # The comparison: a model predicting about the mean disagrees on most rows.
        differences = np.abs(bundles[8][1].predict(FEATURES.head(40)) - expected)
        assert metric(client, "scoring_shadow_rows_total", agree="false") == np.sum(
            differences > 5.0)
        assert metric(client, "scoring_shadow_rows_total", agree="true") == np.sum(
            differences <= 5.0)
        assert metric(client, "scoring_shadow_difference_count") == len(ROWS)
        assert metric(client, "scoring_shadow_difference_sum") == pytest.approx(
            differences.sum(), rel=1e-4)
        assert metric(client, "scoring_shadow_seconds_count") == len(ROWS)

        # The file removed: no more copies.
        shadow_file.unlink()
        assert wait_for(lambda: client.app.state.mirror.target is None)
        client.post("/score", json={"data": [ROWS[0]]})
        time.sleep(0.5)
        assert metric(client, "scoring_shadow_requests_total",
                      outcome="answered") == len(ROWS)

    # Side by side in shadow-*.jsonl, under the shadow's version and the request ids;
    # the scoring log (what drift and collect read) has production's rows only.
    from ml_service.serving.scoring_log import read_logs

    lines = [json.loads(line) for path in sorted(logs.glob("shadow-*.jsonl"))
             for line in path.read_text().splitlines()]
    assert len(lines) == len(ROWS) and {line["model_version"] for line in lines} == {8}
    by_id = {line["request_id"]: line for line in lines}
    assert set(by_id) == {a["request_id"] for a in answers}
    for answer, row in zip(answers, ROWS):
        line = by_id[answer["request_id"]]
        assert line["production_prediction"] == pytest.approx(answer["result"][0])
        assert [line[name] for name in FEATURES.columns] == pytest.approx(row)
    np.testing.assert_allclose(
        [by_id[a["request_id"]]["prediction"] for a in answers],
        bundles[8][1].predict(FEATURES.head(40)), rtol=1e-6)
    logged = read_logs(logs)
    assert set(logged["model_version"]) == {7} and len(logged) == len(ROWS) + 1


def test_a_shadow_that_is_down_or_hangs_changes_no_answer(bundles, tmp_path):
    """Copies fail or wait on the mirror's thread; every request is answered at once."""
    shadow_file = tmp_path / "shadow.json"
    point_at(shadow_file, f"http://127.0.0.1:{free_port()}")  # nothing listens
    with production(bundles, shadow_file) as client:
        assert wait_for(lambda: client.app.state.mirror.target is not None)
        for row in ROWS[:10]:
            assert client.post("/score", json={"data": [row]}).status_code == 200

        def counted() -> bool:  # sent and failed, or dropped once 5 in a row failed
            failed = metric(client, "scoring_shadow_requests_total", outcome="failed")
            dropped = metric(client, "scoring_shadow_requests_total", outcome="dropped")
            return failed >= 5 and failed + dropped == 10

        assert wait_for(counted)

    # A shadow that accepts connections and never answers: the mirror's 5 s
    # timeout is on its own thread, and its queue drops what it cannot hold.
    with socket.socket() as hanging:
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(64)
        point_at(shadow_file, f"http://127.0.0.1:{hanging.getsockname()[1]}")
        with production(bundles, shadow_file) as client:
            assert wait_for(lambda: client.app.state.mirror.target is not None)
            started = time.monotonic()
            for row in ROWS:
                assert client.post("/score", json={"data": [row]}).status_code == 200
            assert time.monotonic() - started < 4.0  # not one 5 s timeout waited on


@pytest.mark.parametrize("text", [
    "", "not json", '{"fraction": 1}', '{"url": "ftp://host"}', '{"url": "http://h", '
    '"fraction": 0}', '{"url": "http://h", "fraction": 1.5}', '{"url": "http://h", "version": '
    '"x"}'])
def test_a_shadow_file_that_is_empty_or_not_valid_is_no_shadow(tmp_path, text):
    path = tmp_path / "shadow.json"
    path.write_text(text)
    assert read_target(path) is None
    assert read_target(tmp_path / "absent.json") is None


def test_a_valid_shadow_file():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shadow.json"
        path.write_text('{"url": "http://10.96.0.12/", "fraction": 0.25, "version": 3, '
                        '"tolerance": 3.2}')
        target = read_target(path)
    assert target is not None and target.url == "http://10.96.0.12"
    assert (target.fraction, target.version, target.tolerance) == (0.25, 3, 3.2)


def test_copies_beyond_the_queue_are_dropped_not_waited_for(bundles, tmp_path):
    from ml_service.serving.shadow import Mirror
    from prometheus_client import CollectorRegistry

    shadow_file = tmp_path / "shadow.json"
    with socket.socket() as hanging:
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(8)
        point_at(shadow_file, f"http://127.0.0.1:{hanging.getsockname()[1]}")
        registry = CollectorRegistry()
        mirror = Mirror(shadow_file, registry, (25.0, 346.0), max_pending=5, timeout=2.0)
        try:
            for _ in range(20):
                mirror.offer(b'{"data": [[1]]}', {}, np.array([1.0]))
            dropped = registry.get_sample_value("scoring_shadow_requests_total",
                                                {"outcome": "dropped"})
            assert dropped is not None and 14 <= dropped <= 15  # 5 queued, 0-1 being sent
        finally:
            mirror.close(timeout=1)

"""The scoring log: every scored row written off the request path, none lost."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from diabetes_regression.schema import CONTRACT
from ml_service.serving.scoring_log import Batch, ScoringLog, now_iso, read_logs
from ml_service.serving import create_app
from ml_service.settings import Settings
from tests.integration.test_serving import ROW, bundle  # noqa: F401 - fixture

NAMES = CONTRACT.feature_names


def settings_for(bundle_dir, log_dir, **extra) -> Settings:
    return Settings(bundle_dir=bundle_dir, scoring_log_dir=log_dir, **extra)


def test_every_scored_row_is_logged_with_its_request_id_and_prediction(
    bundle, tmp_path  # noqa: F811
):
    directory, _ = bundle
    app = create_app(settings_for(directory, tmp_path / "log"))
    sent, responses = 0, []
    with TestClient(app) as client:
        for size in (1, 3, 250, 1, 1000):
            response = client.post("/score", json={"data": [ROW] * size})
            assert response.status_code == 200
            responses.append(response.json())
            sent += size
        bad = client.post("/score", json={"data": [ROW[:3]]})
        assert bad.status_code == 422  # rejected requests are not logged
        given = client.post("/score", json={"data": [ROW]}, headers={"X-Request-ID": "abc-123"})
        assert given.json()["request_id"] == "abc-123" == given.headers["x-request-id"]
        sent += 1
    # Leaving the client ran the lifespan shutdown, which drains the queue.
    logged = read_logs(tmp_path / "log")
    assert len(logged) == sent
    assert set(logged["request_id"]) == {r["request_id"] for r in responses} | {"abc-123"}
    first = logged[logged["request_id"] == responses[2]["request_id"]].sort_values("row")
    assert list(first["row"]) == list(range(250))
    np.testing.assert_allclose(first["prediction"], responses[2]["result"])
    assert list(first.iloc[0][NAMES]) == ROW
    assert set(logged["model_version"]) == {7}


def test_files_rotate_at_the_size_limit_without_losing_rows(tmp_path):
    log = ScoringLog(tmp_path, NAMES, "m", 1, max_bytes=10_000)
    for i in range(40):
        assert log.submit(Batch(f"r{i}", now_iso(), np.ones((5, 10)), np.arange(5.0)))
    log.close()
    files = sorted(tmp_path.glob("scoring-*.jsonl"))
    assert len(read_logs(tmp_path)) == 200 == log.rows_written
    # A file is closed only when the next batch would not fit: every file but
    # the last holds as many whole batches as fit in 10,000 bytes.
    sizes = [path.stat().st_size for path in files]
    lines = [path.read_bytes().count(b"\n") for path in files]
    batch = max(size * 5 // count for size, count in zip(sizes, lines))  # bytes per batch
    assert 1 < len(files) == log.files_written
    assert all(10_000 - batch < size <= 10_000 for size in sizes[:-1]), sizes


def test_a_full_queue_refuses_instead_of_dropping(tmp_path, monkeypatch):
    gate = threading.Event()
    original = ScoringLog._write

    def slow_write(self, batch):
        gate.wait(10)  # a sink that cannot keep up
        original(self, batch)

    monkeypatch.setattr(ScoringLog, "_write", slow_write)
    log = ScoringLog(tmp_path, NAMES, "m", 1, max_pending=2)
    batch = Batch("r", now_iso(), np.ones((1, 10)), np.ones(1))
    accepted = [log.submit(batch) for _ in range(6)]
    # Two wait in the queue (one more if the writer already took one); then refusals.
    assert accepted[:2] == [True, True] and accepted[-1] is False
    assert 2 <= accepted.count(True) <= 3
    gate.set()
    log.close()
    assert log.rows_written == accepted.count(True)


def test_the_service_answers_503_with_retry_after_when_the_log_is_full(
    bundle, tmp_path, monkeypatch  # noqa: F811
):
    gate = threading.Event()
    original = ScoringLog._write
    monkeypatch.setattr(ScoringLog, "_write", lambda self, b: (gate.wait(10), original(self, b)))
    directory, _ = bundle
    app = create_app(settings_for(directory, tmp_path / "log", scoring_log_max_pending=1))
    with TestClient(app) as client:
        codes = [client.post("/score", json={"data": [ROW]}).status_code for _ in range(4)]
        assert codes[0] == 200 and 503 in codes
        refused = next(r for r in [client.post("/score", json={"data": [ROW]})]
                       if r.status_code == 503)
        assert refused.headers["retry-after"] == "1"
        assert "scoring log is behind" in refused.json()["detail"]
        metrics = client.get("/metrics").text
        assert "scoring_log_refused_total" in metrics and "scoring_log_queue_depth" in metrics
        gate.set()
    assert len(read_logs(tmp_path / "log")) == codes.count(200)


def test_a_partly_written_last_line_is_skipped(tmp_path):
    (tmp_path / "scoring-x.jsonl").write_text('{"request_id": "a", "row": 0}\n{"request_')
    assert list(read_logs(tmp_path)["request_id"]) == ["a"]


@pytest.mark.parametrize("header", ["", "x" * 200, "bad id!"])
def test_unusable_request_ids_are_replaced(bundle, tmp_path, header):  # noqa: F811
    directory, _ = bundle
    with TestClient(create_app(settings_for(directory, tmp_path))) as client:
        response = client.post("/score", json={"data": [ROW]}, headers={"X-Request-ID": header})
        assert len(response.json()["request_id"]) == 32


def test_the_log_is_private_and_never_grows_past_its_cap(tmp_path):
    """16 clients writing without end used to fill the disk; now the oldest files go."""
    import stat

    directory = tmp_path / "log"
    log = ScoringLog(directory, NAMES, "m", 1, max_bytes=8192, max_total=40_000)
    for i in range(400):
        assert log.submit(Batch(f"r{i}", now_iso(), np.ones((5, 10)), np.arange(5.0)))
    log.close()
    files = list(directory.glob("scoring-*.jsonl"))
    assert sum(f.stat().st_size for f in files) <= 40_000
    assert log.files_dropped > 0 and log.rows_written == 2000
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
    # What is left is the newest: the last request is there, the first is gone.
    ids = set(read_logs(directory)["request_id"])
    assert "r399" in ids and "r0" not in ids


def test_a_sets_lines_name_the_partition_and_the_model_that_scored_it(tmp_path):
    log = ScoringLog(tmp_path, ["price", "promotion"], "sales", 4,
                     partition_keys=["store", "region"])
    assert log.submit(Batch("a", now_iso(), np.array([[1.5, 0.0], [2.5, 1.0]]),
                            np.array([3.0, 4.0]), (7, "north \"x\""), 2))
    with pytest.raises(ValueError, match="names 2 partition values, not 1"):
        log.submit(Batch("b", now_iso(), np.ones((1, 2)), np.ones(1), (7,), 2))
    log.close()
    logged = read_logs(tmp_path)
    assert logged[["store", "region", "source_version", "model_version"]].values.tolist() == [
        [7, 'north "x"', 2, 4]] * 2
    assert list(logged["price"]) == [1.5, 2.5] and list(logged["prediction"]) == [3.0, 4.0]


def test_a_feature_named_like_a_log_column_is_refused_at_start(tmp_path):
    with pytest.raises(ValueError, match=r"cannot name a column \['prediction'\] twice"):
        ScoringLog(tmp_path, ["price", "prediction"], "m", 1)

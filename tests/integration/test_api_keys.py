"""API keys on /score and /metrics: who may score, rotation, and the key id in the log."""

from __future__ import annotations

import json
import logging
import time

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from ml_service.serving import auth, create_app
from ml_service.serving.auth import ApiKeyError, KeyRing, key_id, new_key
from ml_service.settings import Settings
from tests.conftest import DATA, fit, write_bundle

ROW = [59.0, 2.0, 32.1, 101.0, 157.0, 93.2, 38.0, 4.0, 4.8598, 87.0]
OLD, NEW, OTHER = new_key(), new_key(), new_key()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bundle")
    write_bundle(directory, fit(pd.read_csv(DATA), {"alpha": 1.0}), version=3)
    return directory


def score(client, **headers):
    return client.post("/score", json={"data": [ROW]}, headers=headers)


@pytest.fixture
def client(bundle, tmp_path):
    app = create_app(Settings(bundle_dir=bundle, api_keys=f"{OLD},{NEW}",
                              scoring_log_dir=tmp_path / "log"), host="0.0.0.0")
    with TestClient(app) as test_client:
        yield test_client


def logged(directory) -> list[dict]:
    return [json.loads(line) for path in sorted(directory.glob("scoring-*.jsonl"))
            for line in path.read_text().splitlines()]


def test_score_takes_either_of_two_keys_in_either_header(client):
    assert score(client, authorization=f"Bearer {OLD}").status_code == 200
    assert score(client, authorization=f"bearer {NEW}").status_code == 200
    assert score(client, **{"api-key": NEW}).status_code == 200


@pytest.mark.parametrize("headers, detail", [
    ({}, "an API key is required"),
    ({"authorization": f"Bearer {OTHER}"}, "not accepted"),
    ({"api-key": OTHER}, "not accepted"),
    ({"authorization": f"Basic {OLD}"}, "not accepted"),  # only the Bearer scheme
    ({"authorization": f"Bearer {OLD[:-1]}"}, "not accepted"),
    ({"authorization": "Bearer"}, "not accepted"),
])
def test_score_without_an_accepted_key_is_401_and_nothing_is_scored(client, headers, detail):
    response = score(client, **headers)
    assert response.status_code == 401
    assert detail in response.json()["detail"]
    assert response.headers["www-authenticate"] == 'Bearer realm="scoring"'
    assert OLD not in response.text and OTHER not in response.text


def test_the_key_is_checked_before_the_body_is_read(client):
    """A stranger's oversized or malformed body costs no parsing: 401, not 413 or 422."""
    too_big = b"[" * 10_000_000
    response = client.post("/score", content=too_big,
                           headers={"content-type": "application/json"})
    assert response.status_code == 401
    assert client.post("/score", content=b"{", headers={"content-type": "text/plain"}
                       ).status_code == 401


def test_health_docs_and_metadata_stay_open(client):
    for path in ("/health", "/metadata", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    assert "401" in json.dumps(client.get("/openapi.json").json()["paths"]["/score"])


def test_refusals_are_counted_in_the_metrics(client):
    score(client)
    assert 'status="401"' in client.get("/metrics").text


def test_the_log_records_the_key_id_never_the_key(bundle, tmp_path):
    log = tmp_path / "log"
    app = create_app(Settings(bundle_dir=bundle, api_keys=f"{OLD},{NEW}", scoring_log_dir=log),
                     host="0.0.0.0")
    with TestClient(app) as client:
        score(client, authorization=f"Bearer {OLD}")
        score(client, **{"api-key": NEW})
        score(client)  # refused: not logged
    lines = logged(log)
    assert [line["api_key"] for line in lines] == [key_id(OLD), key_id(NEW)]
    text = "".join(p.read_text() for p in log.glob("*.jsonl"))
    assert OLD not in text and NEW not in text


def test_keys_rotate_through_the_file_without_a_restart(bundle, tmp_path, monkeypatch):
    """Old and new accepted together, then the old one removed: refused within a second."""
    monkeypatch.setattr(auth, "RELOAD_SECONDS", 0.05)
    keys = tmp_path / "keys"
    keys.write_text(f"# rotation started\n{OLD}\n{NEW}\n")
    app = create_app(Settings(bundle_dir=bundle, api_keys_file=keys), host="0.0.0.0")
    with TestClient(app) as client:
        assert score(client, authorization=f"Bearer {OLD}").status_code == 200
        assert score(client, authorization=f"Bearer {NEW}").status_code == 200
        replacement = tmp_path / "keys.new"  # swapped in whole, as a Secret volume does
        replacement.write_text(f"{NEW}\n")
        replacement.replace(keys)
        time.sleep(0.1)
        assert score(client, authorization=f"Bearer {OLD}").status_code == 401
        assert score(client, authorization=f"Bearer {NEW}").status_code == 200
        # A bad edit (a key too short) keeps the keys in force: nothing opens up.
        keys.write_text("short\n")
        time.sleep(0.1)
        assert score(client, authorization=f"Bearer {NEW}").status_code == 200
        assert score(client).status_code == 401
        # An emptied file accepts no key at all: it never falls back to open.
        keys.write_text("# all revoked\n")
        time.sleep(0.1)
        assert score(client, authorization=f"Bearer {NEW}").status_code == 401
        assert score(client).status_code == 401


def test_without_keys_only_loopback_is_open(bundle, caplog):
    with caplog.at_level(logging.WARNING):
        app = create_app(Settings(bundle_dir=bundle), host="127.0.0.1")
    assert "open to anyone on this machine" in caplog.text
    with TestClient(app) as client:
        assert score(client).status_code == 200
    with pytest.raises(ApiKeyError, match="no API keys for /score.*0.0.0.0.*MLOPS_API_KEYS"):
        create_app(Settings(bundle_dir=bundle), host="0.0.0.0")
    app = create_app(Settings(bundle_dir=bundle, anonymous_scoring=True), host="0.0.0.0")
    with TestClient(app) as client:
        assert score(client).status_code == 200


@pytest.mark.parametrize("keys, message", [
    ("short-key", "too short"),
    (f"{OLD} {NEW}", "has characters other than"),  # a space inside one key
    (f'"{OLD}"', "has characters"),
], ids=["short", "space", "quoted"])  # ids of their own: the keys are random
def test_bad_keys_stop_the_start_and_are_not_echoed(bundle, keys, message):
    with pytest.raises(ApiKeyError, match=message) as raised:
        create_app(Settings(bundle_dir=bundle, api_keys=keys), host="0.0.0.0")
    assert OLD not in str(raised.value)


def test_a_missing_key_file_stops_the_start(bundle, tmp_path):
    with pytest.raises(ApiKeyError, match="cannot be read"):
        create_app(Settings(bundle_dir=bundle, api_keys_file=tmp_path / "absent"),
                   host="0.0.0.0")


def test_metrics_take_their_own_key(bundle):
    scrape = new_key()
    app = create_app(Settings(bundle_dir=bundle, api_keys=OLD, metrics_keys=scrape),
                     host="0.0.0.0")
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"authorization": f"Bearer {OLD}"}
                          ).status_code == 401  # a scoring key does not read metrics
        assert client.get("/metrics", headers={"authorization": f"Bearer {scrape}"}
                          ).status_code == 200
        assert score(client, authorization=f"Bearer {scrape}").status_code == 401


def test_key_ids_are_stable_and_short():
    ring = KeyRing(f"{OLD}\n{NEW}, {OLD}", None, "MLOPS_API_KEYS")
    assert ring.ids() == sorted({key_id(OLD), key_id(NEW)})
    assert len(key_id(OLD)) == 12 and key_id(OLD) == key_id(OLD)
    assert ring.identify("", OLD) == key_id(OLD)
    assert ring.identify(f"Bearer  {NEW} ", "") == key_id(NEW)


@pytest.mark.parametrize("host, open_", [("127.0.0.1", True), ("127.8.9.10", True),
                                         ("::1", True), ("localhost", True),
                                         ("0.0.0.0", False), ("127.example.com", False),
                                         ("10.0.0.1", False), ("::", False)])
def test_only_loopback_addresses_count_as_loopback(host, open_):
    assert auth.loopback(host) is open_

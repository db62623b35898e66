"""The scoring service through FastAPI's TestClient: contract, bad input, fuzzing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from diabetes_regression.schema import CONTRACT
from ml_service.bundle import MODEL_FILE
from ml_service.serving import ModelIntegrityError, create_app
from ml_service.settings import Settings
from ml_service.signing import SignatureError
from tests.conftest import DATA, fit, sign, write_bundle

NAMES = CONTRACT.feature_names
ROW = [59.0, 2.0, 32.1, 101.0, 157.0, 93.2, 38.0, 4.0, 4.8598, 87.0]
#: A raw body is scored only when labelled JSON (no Content-Type is 415).
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module", params=["onnx", "sklearn"])
def bundle(request, tmp_path_factory):
    """A bundle made straight from a trained model, as `mlops bundle` would write it:
    served by its ONNX form, and by scikit-learn (a model skl2onnx cannot convert)."""
    import pandas as pd

    directory = tmp_path_factory.mktemp("bundle")
    model = fit(pd.read_csv(DATA), {"alpha": 1.0})
    write_bundle(directory, model, runtime=request.param, version=7, git_commit="abc123",
                 dataset_digest="d1g3st", metrics={"rmse": 50.0})
    return directory, model


@pytest.fixture(scope="module")
def client(bundle):
    directory, _ = bundle
    app = create_app(Settings(bundle_dir=directory, max_rows=1000, max_body_bytes=200_000))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def score(client, data, **kwargs):
    return client.post("/score", json={"data": data}, **kwargs)


def test_rows_are_scored_with_the_bundled_model(client, bundle):
    _, model = bundle
    rows = [ROW, [48.0, 1.0, 21.6, 87.0, 183.0, 103.2, 70.0, 3.0, 3.8918, 69.0]]
    response = score(client, rows)
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == {"name": "diabetes-ridge", "version": 7}
    import pandas as pd

    expected = model.predict(pd.DataFrame(rows, columns=NAMES))
    np.testing.assert_allclose(body["result"], expected)


def test_named_records_score_the_same_as_rows(client):
    record = dict(zip(NAMES, ROW))
    shuffled = dict(reversed(list(record.items())))
    by_rows = score(client, [ROW]).json()["result"]
    assert score(client, [record, shuffled]).json()["result"] == pytest.approx(by_rows * 2)


def test_integers_are_accepted_as_numbers(client):
    assert score(client, [[int(v) if v.is_integer() else v for v in ROW]]).status_code == 200


BAD_ROWS = [
    ([ROW[:9]], "row 0: expected 10 values"),
    ([ROW, ROW + [1.0]], "row 1: expected 10 values"),
    ([ROW[:2] + ["32.1"] + ROW[3:]], "row 0, feature 'bmi': expected a number, got a string"),
    ([ROW[:1] + [True] + ROW[2:]], "row 0, feature 'sex': expected a number, got a boolean"),
    ([ROW[:3] + [None] + ROW[4:]], "row 0, feature 'bp': expected a number, got null"),
    ([[200.0] + ROW[1:]], "row 0, feature 'age': 200 is outside [0, 120]"),
    ([ROW, ROW[:1] + [1.5] + ROW[2:]], "row 1, feature 'sex': 1.5 is not one of [1.0, 2.0]"),
    ([ROW[:9] + [-5.0]], "row 0, feature 's6': -5 is outside [30, 400]"),
    ([{k: v for k, v in zip(NAMES, ROW) if k != "s3"}], "row 0: missing feature 's3'"),
    ([{**dict(zip(NAMES, ROW)), "height": 180}], "row 0: unknown feature 'height'"),
    (["not a row"], "row 0: expected a list of 10 numbers or an object, got a string"),
    ([], "'data' is empty"),
    ({"age": 1}, "'data' must be a list of rows, got an object"),
]


@pytest.mark.parametrize("data,message", BAD_ROWS)
def test_contract_violations_are_422_naming_row_and_feature(client, data, message):
    response = score(client, data)
    assert response.status_code == 422
    assert message in response.json()["detail"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_422(client, literal):
    body = '{"data": [[%s, 2, 32.1, 101, 157, 93.2, 38, 4, 4.86, 87]]}' % literal
    response = client.post("/score", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert f"{literal} is not a valid JSON number" in response.json()["detail"]


def test_numbers_that_overflow_to_infinity_are_422(client):
    body = '{"data": [[1e999, 2, 32.1, 101, 157, 93.2, 38, 4, 4.86, 87]]}'
    response = client.post("/score", content=body, headers=JSON)
    assert response.status_code == 422
    assert "row 0, feature 'age': inf is not a finite number" in response.json()["detail"]


def test_huge_integers_are_422(client):
    body = '{"data": [[%s, 2, 32.1, 101, 157, 93.2, 38, 4, 4.86, 87]]}' % ("9" * 400)
    response = client.post("/score", content=body, headers=JSON)
    assert response.status_code == 422
    assert "row 0, feature 'age'" in response.json()["detail"]


@pytest.mark.parametrize(
    "body,message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", 'a JSON object with a "data" list'),
        ('{"rows": []}', 'a JSON object with a "data" list'),
        ("", "not valid JSON"),
        ("[" * 100_000, "not valid JSON"),
    ],
)
def test_malformed_bodies_are_422(client, body, message):
    response = client.post("/score", content=body, headers=JSON)
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_too_many_rows_is_413(client):
    response = score(client, [[40.0, 1.0, 25.0, 90.0, 180.0, 110.0, 50.0, 4.0, 4.6, 90.0]] * 1001)
    assert response.status_code == 413
    assert "too many rows: 1001 > 1000" in response.json()["detail"]


def test_an_oversized_body_is_413_before_it_is_parsed(client):
    response = client.post("/score", content=b"x" * 200_001, headers=JSON)
    assert response.status_code == 413
    assert "exceeds 200000" in response.json()["detail"]


def test_health_and_metadata_describe_the_model(client):
    assert client.get("/health").json() == {
        "status": "ok", "model": {"name": "diabetes-ridge", "version": 7}
    }
    metadata = client.get("/metadata").json()
    assert metadata["git_commit"] == "abc123" and metadata["dataset_digest"] == "d1g3st"
    assert metadata["feature_names"] == NAMES and metadata["metrics"] == {"rmse": 50.0}


def test_metrics_count_requests_rows_and_the_model(client):
    score(client, [ROW, ROW])
    score(client, [])
    text = client.get("/metrics").text
    assert 'scoring_requests_total{route="/score",status="200"}' in text
    assert 'scoring_requests_total{route="/score",status="422"}' in text
    assert 'scoring_model_info{git_commit="abc123",name="diabetes-ridge",version="7"} 1.0' in text
    rows = next(line for line in text.splitlines() if line.startswith("scoring_rows_total"))
    assert float(rows.split()[1]) >= 2


def test_openapi_documents_the_score_contract(client):
    spec = client.get("/openapi.json").json()
    schema = spec["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]
    record = schema["schema"]["properties"]["data"]["items"]["oneOf"][1]
    assert record["required"] == NAMES
    assert record["properties"]["age"] == {
        "type": "number", "minimum": 0, "maximum": 120, "description": "age in years"
    }
    assert client.get("/docs").status_code == 200


def test_a_tampered_model_file_stops_the_start(bundle, tmp_path):
    directory, _ = bundle
    copy = tmp_path / "bundle"
    copy.mkdir()
    (copy / "metadata.json").write_text((directory / "metadata.json").read_text())
    (copy / MODEL_FILE).write_bytes((directory / MODEL_FILE).read_bytes() + b"\0")
    with pytest.raises(SignatureError, match="is not signed"):
        create_app(Settings(bundle_dir=copy))
    sign(copy)  # behind the signature, the hash of the bundle's metadata still holds
    with pytest.raises(ModelIntegrityError, match="refusing to serve"):
        create_app(Settings(bundle_dir=copy))


def test_the_expected_hash_from_settings_overrides_the_bundle_metadata(bundle):
    directory, _ = bundle
    with pytest.raises(ModelIntegrityError):
        create_app(Settings(bundle_dir=directory, model_sha256="0" * 64))


# Any JSON at all: the service must answer 200, 413 or 422, never 5xx.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)  # NaN/inf: sent raw in tests above
    | st.text(max_size=5),
    lambda children: st.lists(children, max_size=12)
    | st.dictionaries(st.sampled_from(NAMES + ["x"]), children, max_size=11),
    max_leaves=40,
)
plausible_row = st.lists(
    st.floats(min_value=-1e3, max_value=1e3) | st.integers(-10, 500), min_size=10, max_size=10
)


@hsettings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=json_values | st.lists(plausible_row, max_size=5))
def test_fuzzed_payloads_never_cause_a_server_error(client, data):
    response = score(client, data)
    assert response.status_code in (200, 413, 422), response.text
    if response.status_code == 200:
        assert all(math.isfinite(v) for v in response.json()["result"])
        assert len(response.json()["result"]) == len(data)
    else:
        assert json.loads(response.text)["detail"]


@pytest.mark.parametrize("content_type", [
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain",
    None,  # a cross-site fetch(..., {mode: "no-cors", body: blob}) sends none
])
def test_bodies_that_are_not_json_are_415(client, content_type):
    """A cross-site form post is never scored, nor a body without a Content-Type."""
    body = json.dumps({"data": [ROW]})
    response = client.post("/score", content=body,
                           headers={"Content-Type": content_type} if content_type else {})
    assert "content-type" not in response.request.headers or content_type
    assert response.status_code == 415
    assert "Content-Type must be application/json, got " \
        f"{(content_type or 'none').split(';')[0]}" in response.json()["detail"]
    for ok in ("application/json; charset=utf-8", "application/vnd.api+json"):
        assert client.post("/score", content=body,
                           headers={"Content-Type": ok}).status_code == 200


def test_a_trailing_slash_is_not_redirected_to_a_host_the_client_chose(client):
    response = client.post("/score/", json={"data": [ROW]}, follow_redirects=False,
                           headers={"Host": "evil.example"})
    assert response.status_code == 404 and "location" not in response.headers


def test_a_request_id_with_a_trailing_newline_is_replaced(client):
    response = score(client, [ROW], headers={"X-Request-ID": "abc\n"})
    assert response.json()["request_id"] != "abc\n"
    assert len(response.json()["request_id"]) == 32


def test_a_client_that_disconnects_mid_upload_is_counted_499_not_a_server_error(bundle):
    """No traceback, no 500 in /metrics: the client left, nothing failed."""
    import asyncio

    directory, _ = bundle
    app = create_app(Settings(bundle_dir=directory))
    messages = iter([{"type": "http.request", "body": b'{"data": [[59', "more_body": True},
                     {"type": "http.disconnect"}])
    sent = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/score", "raw_path": b"/score",
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 8080),
             "headers": [(b"content-type", b"application/json"), (b"content-length", b"999")]}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 499
    with TestClient(app) as fresh:
        metrics = fresh.get("/metrics").text
    assert 'scoring_requests_total{route="/score",status="499"} 1.0' in metrics
    assert 'status="500"' not in metrics


def _rows(count):
    import pandas as pd

    return pd.read_csv(DATA)[NAMES].astype(float).head(count).values.tolist()


def test_a_large_request_takes_the_flat_path_and_scores_what_the_model_predicts(client, bundle):
    from ml_service.bundle import PREDICTION_ATOL, PREDICTION_RTOL
    from ml_service.serving.scoring import FLAT_BODY_BYTES

    _, model = bundle
    rows = _rows(400)
    body = json.dumps({"data": rows}, separators=(", ", ":\n "))  # any whitespace
    assert len(body) > FLAT_BODY_BYTES
    response = client.post("/score", content=body, headers=JSON)
    assert response.status_code == 200
    import pandas as pd

    expected = model.predict(pd.DataFrame(rows, columns=NAMES))
    np.testing.assert_allclose(response.json()["result"], expected, rtol=PREDICTION_RTOL,
                               atol=PREDICTION_ATOL)


@pytest.mark.parametrize("change,message", [
    (lambda rows: rows.__setitem__(317, rows[317][:9]), "row 317: expected 10 values"),
    (lambda rows: rows.__setitem__(318, rows[318] + [1.0]), "row 318: expected 10 values"),
    (lambda rows: rows[250].__setitem__(4, 1e6), "row 250, feature 's1': 1e+06 is outside"),
    (lambda rows: rows[3].__setitem__(1, 1.5), "row 3, feature 'sex': 1.5 is not one of"),
    (lambda rows: rows[399].__setitem__(9, [90.0]), "row 399, feature 's6': expected a number"),
    (lambda rows: rows.insert(5, 7.0), "row 5: expected a list of 10 numbers"),
])
def test_a_large_request_with_one_bad_value_names_its_row_and_feature(client, change, message):
    rows = _rows(400)
    change(rows)
    response = score(client, rows)
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_uneven_rows_that_hold_the_right_number_of_values_in_all_are_422(client):
    rows = _rows(300)
    rows[10], rows[11] = rows[10] + rows[11][:1], rows[11][1:]  # 11 and 9 values
    response = score(client, rows)
    assert response.status_code == 422
    assert "row 10: expected 10 values" in response.json()["detail"]


def test_a_duplicated_data_key_is_read_as_the_standard_library_reads_it(client):
    rows = json.dumps(_rows(100))
    response = client.post("/score", content='{"data": %s, "data": 3}' % rows,
                           headers=JSON)
    assert response.status_code == 422
    assert "'data' must be a list of rows, got a number" in response.json()["detail"]


def test_a_tampered_onnx_file_stops_the_start(tmp_path):
    import pandas as pd

    from ml_service.bundle import ONNX_FILE

    write_bundle(tmp_path, fit(pd.read_csv(DATA), {"alpha": 1.0}), runtime="onnx")
    create_app(Settings(bundle_dir=tmp_path))  # starts as written
    (tmp_path / ONNX_FILE).write_bytes((tmp_path / ONNX_FILE).read_bytes() + b"\0")
    with pytest.raises(SignatureError, match="Hash mismatch for 'model.onnx'"):
        create_app(Settings(bundle_dir=tmp_path))
    sign(tmp_path)
    with pytest.raises(ModelIntegrityError, match="checked at bundle time"):
        create_app(Settings(bundle_dir=tmp_path))


def test_the_runtime_can_be_chosen_and_both_predict_alike(bundle):
    directory, _ = bundle
    answers = {}
    for runtime in ("onnx", "sklearn"):
        settings = Settings(bundle_dir=directory, model_runtime=runtime)
        try:
            app = create_app(settings)
        except RuntimeError as exc:  # a bundle without an ONNX form
            assert "MLOPS_MODEL_RUNTIME=onnx, but the bundle has no ONNX form" in str(exc)
            continue
        with TestClient(app) as test_client:
            answers[runtime] = score(test_client, _rows(50)).json()["result"]
    assert "sklearn" in answers
    if "onnx" in answers:
        np.testing.assert_allclose(answers["onnx"], answers["sklearn"], rtol=1e-6, atol=1e-9)


def test_a_runtime_the_bundle_lacks_stops_the_process_with_one_clear_line(tmp_path):
    import os
    import subprocess
    import sys

    import pandas as pd

    write_bundle(tmp_path, fit(pd.read_csv(DATA), {"alpha": 1.0}), runtime="sklearn")
    result = subprocess.run(
        [sys.executable, "-m", "ml_service.serving"], capture_output=True, text=True,
        timeout=60, env={**os.environ, "MLOPS_BUNDLE_DIR": str(tmp_path),
                         "MLOPS_MODEL_RUNTIME": "onnx", "MLOPS_SERVE_PORT": "1"})
    assert result.returncode == 3, result.stderr
    assert ("cannot start: MLOPS_MODEL_RUNTIME=onnx, but the bundle has no ONNX form: "
            "written without an ONNX form") in result.stderr
    assert "Traceback" not in result.stderr

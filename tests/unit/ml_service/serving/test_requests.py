"""What the service checks before parsing a body, and the /docs schema from a contract."""

from __future__ import annotations

import numpy as np
import pytest

from diabetes_regression.spec import SPEC
from ml_service.serving.requests import check_row_count
from ml_service.serving.schema import score_request_schema
from ml_service.serving.validation import RequestError


def test_a_body_with_more_rows_than_allowed_is_413_before_parsing():
    body = b'{"data": [' + b",".join([b"[1]"] * 11) + b"]}"
    check_row_count(body, 11)
    with pytest.raises(RequestError) as refused:
        check_row_count(body, 10)
    assert refused.value.status == 413 and "11 > 10" in str(refused.value)


def test_the_request_schema_follows_the_contract():
    schema = score_request_schema(SPEC.contract, [list(SPEC.example[0])])
    as_list, as_object = schema["properties"]["data"]["items"]["oneOf"]
    assert as_list["minItems"] == as_list["maxItems"] == len(SPEC.contract.features)
    assert as_object["required"] == SPEC.contract.feature_names
    assert as_object["properties"]["bmi"] == {"type": "number", "minimum": 10, "maximum": 80,
                                              "description": "body mass index, kg/m2"}
    assert schema["example"] == {"data": [list(SPEC.example[0])]}


def test_the_prediction_histogram_counts_a_request_at_once_as_prometheus_would():
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from ml_service.serving.metrics import PredictionHistogram

    edges = np.linspace(25, 350, 11)
    values = np.concatenate([np.random.default_rng(0).uniform(0, 400, 1000), edges])
    reference, ours = CollectorRegistry(), CollectorRegistry()
    one_by_one = Histogram("scoring_prediction", "Distribution of predicted values.",
                           registry=reference, buckets=tuple(float(b) for b in edges))
    for value in values:
        one_by_one.observe(value)
    histogram = PredictionHistogram(edges)
    ours.register(histogram)
    histogram.observe_many(values[:500])
    histogram.observe_many(values[500:])

    def lines(registry):
        return {line for line in generate_latest(registry).decode().splitlines()
                if "_created" not in line and "_sum " not in line}

    assert lines(ours) == lines(reference)  # every bucket edge included (le)
    assert histogram.total == pytest.approx(values.sum())


def _slow(validator, body: bytes):
    import json

    try:
        return validator(json.loads(body)["data"])
    except (RequestError, ValueError, KeyError, TypeError):
        return None


FAST_CASES = [
    b'{"data": [[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]]}',
    b'{"data": [[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]], "extra": 1}',
    b'{"data": [[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87],'
    b' [60.0, 1, 20, 90, 150, 90, 40, 4, 4.5, 90]]}',
]
PRECISE_CASES = [
    b'{"data": [{"age": 59, "sex": 2, "bmi": 32.1, "bp": 101, "s1": 157, "s2": 93.2,'
    b' "s3": 38, "s4": 4, "s5": 4.8598, "s6": 87}]}',           # records
    b'{"data": [[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598]]}',  # too narrow
    b'{"data": [[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87], [1]]}',  # ragged
    b'{"data": [[59, 3, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]]}',  # sex not allowed
    b'{"data": [[590, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]]}',  # out of range
    b'{"data": [[true, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]]}',
    b'{"data": [["59", 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]]}',
    b'{"data": [[NaN, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]]}',
    b'{"data": [[1e400, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]]}',
    b'{"data": [[' + b"9" * 400 + b', 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]]}',
    b'{"data": []}', b'{"data": 3}', b'[]', b'{"rows": []}', b'{"data": [[59,', b'',
]


@pytest.mark.parametrize("body", FAST_CASES)
def test_the_fast_path_takes_valid_list_rows_and_gives_the_precise_paths_matrix(body):
    from ml_service.serving.validation import RowValidator

    validator = RowValidator(SPEC.contract, max_rows=1000)
    fast = validator.fast(body)
    assert fast is not None
    np.testing.assert_array_equal(fast[0], _slow(validator, body))
    assert fast[0].dtype == np.float64


@pytest.mark.parametrize("body", PRECISE_CASES)
def test_anything_else_goes_to_the_precise_path(body):
    from ml_service.serving.validation import RowValidator

    validator = RowValidator(SPEC.contract, max_rows=1000)
    assert validator.fast(body) is None
    assert RowValidator(SPEC.contract, max_rows=1).fast(FAST_CASES[2]) is None  # over the limit

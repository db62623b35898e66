"""What the service checks before parsing a body, and the /docs schema from a contract."""

from __future__ import annotations

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

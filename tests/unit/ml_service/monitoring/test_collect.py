"""Joining logged rows with outcomes, as a pure function on DataFrames."""

from __future__ import annotations

import pandas as pd
import pytest

from diabetes_regression.schema import CONTRACT
from ml_service.errors import DataValidationError, UsageError
from ml_service.monitoring.collect import collect


def logged_rows(frame: pd.DataFrame, request_id: str = "r1") -> pd.DataFrame:
    rows = frame[CONTRACT.feature_names].copy()
    rows.insert(0, "row", range(len(rows)))
    rows.insert(0, "request_id", request_id)
    rows["prediction"] = 150.0
    return rows.reset_index(drop=True)


def test_logged_rows_with_outcomes_become_contract_rows(diabetes):
    sample = diabetes.head(120)
    truth = pd.DataFrame({"request_id": "r1", "row": range(100),
                          "target": sample["target"].head(100)})
    result = collect(logged_rows(sample), truth, CONTRACT)
    assert result.matched == 100 and result.logged == 120 and result.skipped_ambiguous == 0
    assert list(result.dataset.columns) == CONTRACT.columns
    pd.testing.assert_frame_equal(result.dataset, sample.head(100).reset_index(drop=True),
                                  check_dtype=False)


def test_rows_logged_twice_under_one_request_id_are_skipped(diabetes):
    sample = diabetes.head(60)
    logged = pd.concat([logged_rows(sample), logged_rows(sample.head(5))], ignore_index=True)
    truth = pd.DataFrame({"request_id": "r1", "row": range(60), "target": sample["target"]})
    result = collect(logged, truth, CONTRACT, base=diabetes)
    assert result.skipped_ambiguous == 10 and result.matched == 55


def test_multi_row_requests_need_the_row_index_in_the_outcomes(diabetes):
    truth = pd.DataFrame({"request_id": ["r1"], "target": [100.0]})
    with pytest.raises(UsageError, match="no 'row' column but request r1 scored 3 rows"):
        collect(logged_rows(diabetes.head(3)), truth, CONTRACT)


def test_outcomes_that_break_the_contract_are_refused(diabetes):
    sample = diabetes.head(60)
    truth = pd.DataFrame({"request_id": "r1", "row": range(60), "target": 9999.0})
    with pytest.raises(DataValidationError, match="breaks the data contract"):
        collect(logged_rows(sample), truth, CONTRACT)


def test_an_empty_log_is_a_usage_error():
    empty = pd.DataFrame(columns=["request_id", "row", *CONTRACT.feature_names])
    with pytest.raises(UsageError, match="the scoring log is empty"):
        collect(empty, pd.DataFrame({"request_id": [], "target": []}), CONTRACT)

"""The Great Expectations suite on the good dataset and on each bad fixture."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from diabetes_regression.schema import CONTRACT
from ml_service.training.validation import build_suite, validate_frame
from tests.data import make_fixtures

FIXTURES = Path(__file__).parent / "fixtures"


def test_the_example_dataset_passes_every_expectation(diabetes):
    report = validate_frame(diabetes, CONTRACT)
    assert report.success, report.summary()
    assert report.failures == []
    assert report.evaluated == len(build_suite(CONTRACT).expectations)


@pytest.mark.parametrize("name", sorted(make_fixtures.CASES))
def test_each_bad_fixture_fails_the_expectation_it_was_made_to_break(name):
    _, expectation, column = make_fixtures.CASES[name]
    report = validate_frame(pd.read_csv(FIXTURES / f"{name}.csv"), CONTRACT)
    assert not report.success
    failed = {(f.expectation, f.column) for f in report.failures}
    assert (expectation, column) in failed, report.summary()
    # Only the broken column is blamed: other columns still pass.
    blamed = {f.column for f in report.failures} - {None}
    assert blamed <= {column or "bmi"}


@pytest.mark.parametrize("name", sorted(make_fixtures.CASES))
def test_committed_fixtures_equal_what_the_script_writes(name, diabetes):
    assert (FIXTURES / f"{name}.csv").read_text() == make_fixtures.render(name, diabetes)


def test_the_suite_follows_the_contract():
    suite = build_suite(CONTRACT)
    columns = {e.column for e in suite.expectations if hasattr(e, "column")}
    assert columns == set(CONTRACT.columns)
    narrower = replace(
        CONTRACT,
        features=tuple(
            replace(f, maximum=40.0) if f.name == "bmi" else f for f in CONTRACT.features
        ),
    )
    bounds = [
        e for e in build_suite(narrower).expectations
        if e.expectation_type == "expect_column_values_to_be_between" and e.column == "bmi"
    ]
    assert bounds[0].max_value == 40.0


def test_a_few_out_of_range_rows_are_named_with_examples(diabetes):
    frame = diabetes.copy()
    frame.loc[[3, 7], "bp"] = [250.0, 20.0]
    report = validate_frame(frame, CONTRACT)
    (failure,) = report.failures
    assert failure.column == "bp"
    assert "2 value(s) outside [40.0, 200.0]" in failure.detail
    assert "250.0" in failure.detail and "20.0" in failure.detail


def test_the_report_is_written_as_gx_json_and_markdown(tmp_path):
    report = validate_frame(pd.read_csv(FIXTURES / "missing_values.csv"), CONTRACT)
    json_path = report.write(tmp_path)
    result = json.loads(json_path.read_text())
    assert result["success"] is False
    assert any(r["expectation_config"]["type"] == "expect_column_values_to_not_be_null"
               for r in result["results"] if not r["success"])
    markdown = (tmp_path / "validation.md").read_text()
    assert "FAILED" in markdown and "'bp'" in markdown

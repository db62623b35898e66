"""Data validation: a Great Expectations (1.x) suite built from the data contract.

The suite is derived from the model spec's data contract, never written by
hand, so the checks on training data cannot drift from the scoring service's
request validation or the model signature.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ml_service.contract import DataContract

logger = logging.getLogger(__name__)

#: pandas dtypes accepted for numeric columns (CSV readers give int64 or float64).
NUMERIC_DTYPES = ["int8", "int16", "int32", "int64", "float16", "float32", "float64"]


@dataclass
class Failure:
    """One failed expectation, in words a user can act on."""

    expectation: str
    column: str | None
    detail: str

    def __str__(self) -> str:
        where = f"column '{self.column}'" if self.column else "table"
        return f"{self.expectation} failed on {where}: {self.detail}"


@dataclass
class ValidationReport:
    """Outcome of validating one dataset against the suite.

    Attributes:
        success: True if every expectation passed.
        evaluated: Number of expectations evaluated.
        failures: The failed expectations.
        gx_result: Great Expectations' own validation result, as JSON-ready dict.
    """

    success: bool
    evaluated: int
    failures: list[Failure] = field(default_factory=list)
    gx_result: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line per failure, or a pass line."""
        if self.success:
            return f"all {self.evaluated} expectations passed"
        lines = [f"{len(self.failures)} of {self.evaluated} expectations failed:"]
        lines += [f"  - {failure}" for failure in self.failures]
        return "\n".join(lines)

    def write(self, directory: Path) -> Path:
        """Write GX's result (JSON) and a Markdown summary; return the JSON path."""
        directory.mkdir(parents=True, exist_ok=True)
        json_path = directory / "validation.json"
        json_path.write_text(json.dumps(self.gx_result, indent=2, default=str))
        status = "PASSED" if self.success else "FAILED"
        markdown = [f"# Data validation: {status}", "", self.summary(), ""]
        (directory / "validation.md").write_text("\n".join(markdown))
        return json_path


def build_suite(contract: DataContract) -> Any:
    """Return the expectation suite for ``contract``'s training data."""
    import great_expectations as gx

    expectations: Any = gx.expectations
    suite = gx.ExpectationSuite(name=f"{contract.name}_training_data")
    suite.add_expectation(
        expectations.ExpectTableColumnsToMatchOrderedList(column_list=contract.columns)
    )
    suite.add_expectation(
        expectations.ExpectTableRowCountToBeBetween(min_value=contract.min_rows)
    )
    for column in (*contract.features, contract.target):
        suite.add_expectation(
            expectations.ExpectColumnValuesToBeInTypeList(
                column=column.name, type_list=NUMERIC_DTYPES
            )
        )
        suite.add_expectation(expectations.ExpectColumnValuesToNotBeNull(column=column.name))
        suite.add_expectation(
            expectations.ExpectColumnValuesToBeBetween(
                column=column.name, min_value=column.minimum, max_value=column.maximum
            )
        )
        if column.allowed_values is not None:
            suite.add_expectation(
                expectations.ExpectColumnValuesToBeInSet(
                    column=column.name, value_set=list(column.allowed_values)
                )
            )
        low, high = column.mean_range
        suite.add_expectation(
            expectations.ExpectColumnMeanToBeBetween(
                column=column.name, min_value=low, max_value=high
            )
        )
    return suite


def validate_frame(frame: pd.DataFrame, contract: DataContract) -> ValidationReport:
    """Validate ``frame`` against the suite built from ``contract``.

    Pure apart from Great Expectations' in-memory context: no files are read or
    written, and GX's analytics and progress bars are switched off.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    context = gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
        ),
    )
    asset = context.data_sources.add_pandas("training").add_dataframe_asset(contract.name)
    batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(
        batch_parameters={"dataframe": frame}
    )
    suite = context.suites.add(build_suite(contract))
    result = batch.validate(suite)

    present = set(frame.columns)
    failures = [_failure(r, present) for r in result.results if not r.success]
    # Table-level failures first, then wrong types, which explain the rest.
    failures.sort(key=lambda f: (f.column is not None, "type_list" not in f.expectation))
    report = ValidationReport(
        success=bool(result.success),
        evaluated=len(result.results),
        failures=failures,
        gx_result=result.to_json_dict(),  # type: ignore[no-untyped-call]
    )
    logger.info("validation: %s", report.summary())
    return report


def _failure(result: Any, present: set[str]) -> Failure:
    config = result.expectation_config
    kwargs = config.kwargs
    column = kwargs.get("column")
    if column is not None and column not in present:
        return Failure(expectation=config.type, column=column, detail="column is missing")
    detail = _error_message(result.exception_info)
    if detail is None:
        detail = _describe(config.type, kwargs, result.result or {})
    return Failure(expectation=config.type, column=column, detail=detail)


def _error_message(exception_info: Any) -> str | None:
    # GX reports a failed metric either flat or keyed by metric configuration.
    if not exception_info:
        return None
    infos = [exception_info] if "raised_exception" in exception_info else exception_info.values()
    for info in infos:
        if isinstance(info, dict) and info.get("raised_exception"):
            message = str(info.get("exception_message") or "could not be evaluated")
            return message.splitlines()[0][:300]
    return None


def _describe(kind: str, kwargs: dict[str, Any], result: dict[str, Any]) -> str:
    observed = result.get("observed_value")
    if kind == "expect_table_columns_to_match_ordered_list":
        return f"expected columns {kwargs.get('column_list')}, found {observed}"
    if kind == "expect_column_values_to_not_be_null":
        return f"{result.get('unexpected_count', '?')} missing value(s)"
    if "unexpected_count" in result:
        sample = result.get("partial_unexpected_list") or []
        bounds = ""
        if "min_value" in kwargs or "max_value" in kwargs:
            bounds = f" outside [{kwargs.get('min_value')}, {kwargs.get('max_value')}]"
        elif "value_set" in kwargs:
            bounds = f" not in {kwargs['value_set']}"
        return (
            f"{result['unexpected_count']} value(s){bounds}, "
            f"e.g. {[_plain(v) for v in sample[:5]]}"
        )
    if "min_value" in kwargs or "max_value" in kwargs:
        return (
            f"observed {_plain(observed)}, expected between "
            f"{kwargs.get('min_value')} and {kwargs.get('max_value')}"
        )
    if "type_list" in kwargs:
        return f"observed type {observed}, expected a numeric type"
    return f"observed {_plain(observed)}"


def _plain(value: Any) -> Any:
    try:
        return round(float(value), 4)
    except (TypeError, ValueError):
        return value

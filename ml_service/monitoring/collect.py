"""Scoring logs joined with ground-truth outcomes: the next training dataset."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ml_service.contract import DataContract
from ml_service.errors import DataValidationError, UsageError
from ml_service.training.validation import validate_frame


@dataclass
class Collected:
    """The new dataset and how it was made."""

    dataset: pd.DataFrame
    matched: int
    logged: int
    unmatched_outcomes: int
    skipped_ambiguous: int
    expectations: int


def read_outcomes(path: Path, contract: DataContract,
                  target_column: str | None = None) -> pd.DataFrame:
    """The outcomes CSV: ``request_id``, optionally ``row``, and the target column.

    Args:
        target_column: The outcomes' column holding the target, when it is not
            named as the contract's target (``--target-column``).

    Raises:
        UsageError: If the file is missing or lacks a required column.
    """
    try:
        truth = pd.read_csv(path)
    except FileNotFoundError:
        raise UsageError(f"outcomes file not found: {path}") from None
    target = contract.target.name
    if target_column and target_column != target:
        if target_column not in truth.columns:
            raise UsageError(f"{path} has no column {target_column!r} (--target-column); it "
                             f"has {sorted(truth.columns)}")
        if target in truth.columns:
            raise UsageError(f"{path} has both {target!r} (the contract's target) and "
                             f"{target_column!r}: say which holds the outcome")
        truth = truth.rename(columns={target_column: target})
    missing = {"request_id", target} - set(truth.columns)
    if missing:
        hint = (f" (the target column is named as in the data contract, {target!r}; "
                "--target-column maps another name to it)" if target in missing else "")
        raise UsageError(f"{path} lacks column(s) {sorted(missing)}{hint}")
    return truth


def collect(logged: pd.DataFrame, truth: pd.DataFrame, contract: DataContract,
            base: pd.DataFrame | None = None, outcomes_name: str = "the outcomes",
            partition_keys: Sequence[str] = ()) -> Collected:
    """Join logged rows with their outcomes; check the result against the contract.

    Args:
        logged: The scoring log (request_id, row, features, ...).
        truth: Outcomes by request_id (and row, for multi-row requests).
        contract: The model's data contract.
        base: An existing dataset to extend, or None.
        outcomes_name: How to name the outcomes in errors.
        partition_keys: A many-models set's partition keys: logged on each row, kept as
            columns of the dataset.

    Raises:
        UsageError: If the log is empty, was not written by a set of these
            ``partition_keys``, or outcomes of multi-row requests lack ``row``.
        DataValidationError: If the collected dataset breaks the contract.
    """
    target = contract.target.name
    if logged.empty:
        raise UsageError("the scoring log is empty")
    absent = [k for k in partition_keys if k not in logged.columns]
    if absent:
        raise UsageError(f"the scoring log has no partition column(s) {', '.join(absent)}: "
                         "it was not written by a many-models set with these keys")
    # A client-chosen X-Request-ID need not be unique: a row logged twice
    # under one id could pair one client's outcome with another's inputs.
    logged = logged.astype({"request_id": str})
    ambiguous = logged.duplicated(["request_id", "row"], keep=False)
    logged = logged[~ambiguous]
    keys = ["request_id", "row"]
    if "row" not in truth.columns:
        multi = logged.groupby("request_id").size()
        if (multi > 1).any():
            raise UsageError(
                f"{outcomes_name} has no 'row' column but request {multi.idxmax()} scored "
                f"{multi.max()} rows: add the row index to the outcomes"
            )
        keys = ["request_id"]
    truth = truth.astype({"request_id": str})
    merged = logged.merge(truth[[*keys, target]], on=keys, how="inner")
    columns = [*partition_keys, *contract.columns]
    dataset = merged[columns]
    if base is not None:
        missing = [c for c in columns if c not in base.columns]
        if missing:
            raise UsageError(f"the base dataset lacks column(s) {', '.join(missing)}")
        dataset = pd.concat([base[columns], dataset], ignore_index=True)
    report = validate_frame(dataset[contract.columns], contract)
    if not report.success:
        raise DataValidationError(
            f"the collected dataset breaks the data contract\n{report.summary()}", report=report
        )
    return Collected(dataset=dataset, matched=len(merged), logged=len(logged),
                     unmatched_outcomes=len(truth) - len(merged),
                     skipped_ambiguous=int(ambiguous.sum()), expectations=report.evaluated)

"""Which partitions of a batch break the data contract, and why (vectorised).

Great Expectations validates each chunk of partitions as one batch (the
report a person reads); these checks, built from the same contract, name the
partitions at fault so that only those keep their champion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from ml_service.contract import DataContract


def partition_problems(rows: pd.DataFrame, contract: DataContract) -> list[str]:
    """What is wrong with one partition's rows; empty if they meet the contract."""
    problems: list[str] = []
    missing = [c for c in contract.columns if c not in rows.columns]
    if missing:
        return [f"missing columns: {', '.join(missing)}"]
    if len(rows) < contract.min_rows:
        problems.append(f"{len(rows)} rows, fewer than the contract's {contract.min_rows}")
    for column in (*contract.features, contract.target):
        try:
            values = rows[column.name].to_numpy(dtype=float, na_value=np.nan)
        except (TypeError, ValueError):
            problems.append(f"{column.name}: not numeric")
            continue
        nulls = int(np.isnan(values).sum())
        if nulls:
            problems.append(f"{column.name}: {nulls} missing values")
        present = values[~np.isnan(values)]
        outside = int(((present < column.minimum) | (present > column.maximum)).sum())
        if outside:
            problems.append(f"{column.name}: {outside} values outside "
                            f"[{column.minimum:g}, {column.maximum:g}]")
        if column.allowed_values is not None:
            bad = int((~np.isin(present, column.allowed_values)).sum())
            if bad:
                problems.append(f"{column.name}: {bad} values not in {list(column.allowed_values)}")
    return problems


def bad_rows(frame: pd.DataFrame, contract: DataContract, target: bool = True) -> np.ndarray:
    """True for each row with a missing, out-of-range or disallowed contract value.

    With ``target=False`` only the features are checked (rows to score).
    """
    bad = np.zeros(len(frame), dtype=bool)
    for column in (*contract.features, *((contract.target,) if target else ())):
        try:
            values = frame[column.name].to_numpy(dtype=float, na_value=np.nan)
        except (TypeError, ValueError):
            return np.ones(len(frame), dtype=bool)  # not numeric: partition_problems says so
        with np.errstate(invalid="ignore"):
            bad |= np.isnan(values) | (values < column.minimum) | (values > column.maximum)
        if column.allowed_values is not None:
            bad |= ~np.isin(values, column.allowed_values) & ~np.isnan(values)
    return bad


def keys_present(frame: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """Problems with the partition-key columns of a whole shard."""
    problems = [f"partition key column '{k}' is missing" for k in keys if k not in frame.columns]
    if not problems:
        nulls = int(frame[list(keys)].isna().any(axis=1).sum())
        if nulls:
            problems.append(f"{nulls} rows without a partition key")
    return problems

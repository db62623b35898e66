"""Write the bad-data fixtures, each derived from data/diabetes.csv by one mistake.

Run from the repository root (``make data`` does). ``tests/data`` checks that
the committed files equal what this script writes, so they cannot drift.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def missing_column(frame: pd.DataFrame) -> pd.DataFrame:
    """An extract that lost the bmi column."""
    return frame.drop(columns=["bmi"])


def missing_values(frame: pd.DataFrame) -> pd.DataFrame:
    """Blood pressure not recorded for every tenth patient."""
    out = frame.copy()
    out.loc[out.index[::10], "bp"] = np.nan
    return out


def shifted_distribution(frame: pd.DataFrame) -> pd.DataFrame:
    """BMI 25% higher across the board: each value plausible, the whole not."""
    out = frame.copy()
    out["bmi"] = (out["bmi"] * 1.25).round(1)
    return out


def wrong_types(frame: pd.DataFrame) -> pd.DataFrame:
    """Sex coded as letters instead of 1/2."""
    out = frame.copy()
    out["sex"] = out["sex"].map({1.0: "F", 2.0: "M"})
    return out


def out_of_range(frame: pd.DataFrame) -> pd.DataFrame:
    """Age recorded in months instead of years."""
    out = frame.copy()
    out["age"] = out["age"] * 12
    return out


#: fixture name -> (maker, the expectation that must fail, on which column)
CASES = {
    "missing_column": (missing_column, "expect_table_columns_to_match_ordered_list", None),
    "missing_values": (missing_values, "expect_column_values_to_not_be_null", "bp"),
    "shifted_distribution": (shifted_distribution, "expect_column_mean_to_be_between", "bmi"),
    "wrong_types": (wrong_types, "expect_column_values_to_be_in_type_list", "sex"),
    "out_of_range": (out_of_range, "expect_column_values_to_be_between", "age"),
}


def render(name: str, frame: pd.DataFrame) -> str:
    """CSV text of fixture ``name`` made from the good ``frame``."""
    return CASES[name][0](frame).to_csv(index=False)


def main() -> int:
    frame = pd.read_csv(ROOT / "data" / "diabetes.csv")
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name in CASES:
        path = FIXTURES / f"{name}.csv"
        path.write_text(render(name, frame))
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

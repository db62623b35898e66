"""Splitting and fingerprinting a dataset by its contract (the diabetes data as example)."""

import numpy as np
import pandas as pd
import pytest

from diabetes_regression.schema import CONTRACT
from ml_service.errors import DataValidationError, UsageError
from ml_service.training import data as ds


def test_split_is_disjoint_and_complete(diabetes):
    train, holdout = ds.split(diabetes, 0.2, CONTRACT)
    assert len(train) + len(holdout) == len(diabetes)
    assert set(train.index).isdisjoint(holdout.index)
    assert 0.1 < len(holdout) / len(diabetes) < 0.3


def test_a_row_stays_on_its_side_when_rows_are_added_removed_or_shuffled(diabetes):
    mask = pd.Series(ds.holdout_mask(diabetes, 0.2, CONTRACT), index=diabetes.index)
    changed = pd.concat([diabetes.drop(index=range(0, 40)), diabetes.head(5).assign(age=99.0)])
    changed = changed.sample(frac=1.0, random_state=7)
    new_mask = pd.Series(ds.holdout_mask(changed, 0.2, CONTRACT), index=changed.index)
    kept = [i for i in changed.index.unique() if i >= 40]
    assert (new_mask.loc[kept] == mask.loc[kept]).all()


def test_split_does_not_depend_on_int_or_float_storage(diabetes):
    as_int = diabetes.copy()
    as_int["age"] = as_int["age"].astype(int)
    np.testing.assert_array_equal(ds.holdout_mask(diabetes, 0.2, CONTRACT),
                                  ds.holdout_mask(as_int, 0.2, CONTRACT))


def test_split_rejects_fractions_outside_zero_one(diabetes):
    with pytest.raises(ValueError, match="holdout_fraction"):
        ds.split(diabetes, 1.0, CONTRACT)


def test_digest_ignores_formatting_but_not_content(diabetes, tmp_path):
    path = tmp_path / "copy.csv"
    diabetes.to_csv(path, index=False, float_format="%.6f")
    assert ds.dataset_digest(pd.read_csv(path), CONTRACT) == ds.dataset_digest(diabetes, CONTRACT)
    edited = diabetes.copy()
    edited.loc[0, "bmi"] += 0.1
    assert ds.dataset_digest(edited, CONTRACT) != ds.dataset_digest(diabetes, CONTRACT)


def test_load_data_turns_file_problems_into_user_errors(tmp_path):
    with pytest.raises(UsageError, match="not found.*mlops data"):
        ds.load_data(tmp_path / "missing.csv")
    with pytest.raises(UsageError, match="directory"):
        ds.load_data(tmp_path)
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataValidationError, match="not a readable CSV"):
        ds.load_data(tmp_path / "binary.csv")

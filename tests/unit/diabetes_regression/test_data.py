import numpy as np
import pandas as pd
import pytest

from diabetes_regression import data as ds


def test_reference_frame_is_the_raw_unit_diabetes_data():
    frame = ds.reference_frame()
    assert frame.shape == (442, 11)
    assert list(frame.columns) == ds.CONTRACT.columns
    assert frame["age"].max() > 1  # raw years, not scikit-learn's scaled values


def test_committed_csv_equals_the_reference_data(diabetes):
    pd.testing.assert_frame_equal(diabetes, ds.reference_frame().reset_index(drop=True))


def test_split_is_disjoint_and_complete(diabetes):
    train, holdout = ds.split(diabetes, 0.2)
    assert len(train) + len(holdout) == len(diabetes)
    assert set(train.index).isdisjoint(holdout.index)
    assert 0.1 < len(holdout) / len(diabetes) < 0.3


def test_a_row_stays_on_its_side_when_rows_are_added_removed_or_shuffled(diabetes):
    mask = pd.Series(ds.holdout_mask(diabetes, 0.2), index=diabetes.index)
    changed = pd.concat([diabetes.drop(index=range(0, 40)), diabetes.head(5).assign(age=99.0)])
    changed = changed.sample(frac=1.0, random_state=7)
    new_mask = pd.Series(ds.holdout_mask(changed, 0.2), index=changed.index)
    kept = [i for i in changed.index.unique() if i >= 40]
    assert (new_mask.loc[kept] == mask.loc[kept]).all()


def test_split_does_not_depend_on_int_or_float_storage(diabetes):
    as_int = diabetes.copy()
    as_int["age"] = as_int["age"].astype(int)
    np.testing.assert_array_equal(ds.holdout_mask(diabetes, 0.2), ds.holdout_mask(as_int, 0.2))


def test_split_rejects_fractions_outside_zero_one(diabetes):
    with pytest.raises(ValueError, match="holdout_fraction"):
        ds.split(diabetes, 1.0)


def test_digest_ignores_formatting_but_not_content(diabetes, tmp_path):
    path = tmp_path / "copy.csv"
    diabetes.to_csv(path, index=False, float_format="%.6f")
    assert ds.dataset_digest(pd.read_csv(path)) == ds.dataset_digest(diabetes)
    edited = diabetes.copy()
    edited.loc[0, "bmi"] += 0.1
    assert ds.dataset_digest(edited) != ds.dataset_digest(diabetes)


def test_write_reference_round_trips(tmp_path):
    path = ds.write_reference(tmp_path / "sub" / "d.csv")
    assert ds.dataset_digest(ds.read_dataset(path)) == ds.dataset_digest(ds.reference_frame())

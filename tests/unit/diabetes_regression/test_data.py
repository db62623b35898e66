import pandas as pd

from diabetes_regression import data as ds
from diabetes_regression.schema import CONTRACT


def test_reference_frame_is_the_raw_unit_diabetes_data():
    frame = ds.reference_frame()
    assert frame.shape == (442, 11)
    assert list(frame.columns) == CONTRACT.columns
    assert frame["age"].max() > 1  # raw years, not scikit-learn's scaled values


def test_committed_csv_equals_the_reference_data(diabetes):
    pd.testing.assert_frame_equal(diabetes, ds.reference_frame().reset_index(drop=True))


def test_the_spec_writes_the_reference_data_with_mlops_data(tmp_path):
    from typer.testing import CliRunner

    from ml_service.cli import app

    target = tmp_path / "sub" / "d.csv"
    result = CliRunner().invoke(app, ["data", "--out", str(target)])
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_csv(target), ds.reference_frame())

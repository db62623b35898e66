"""The diabetes spec: found through its entry point, and conformant."""

from diabetes_regression.spec import SPEC
from ml_service.conformance import check_spec
from ml_service.spec import installed_models, load_spec


def test_the_spec_is_registered_as_the_diabetes_entry_point():
    assert installed_models()["diabetes"].value == "diabetes_regression.spec:SPEC"
    assert load_spec("diabetes") is not None
    assert load_spec().name == SPEC.name == "diabetes-ridge"
    assert load_spec().package == "diabetes_regression"


def test_the_spec_passes_every_conformance_check():
    passed = check_spec(SPEC)
    assert "fit, score and save the example dataset" in passed and len(passed) == 10


def test_the_example_rows_are_the_first_patients_of_the_dataset(diabetes):
    first = diabetes[SPEC.contract.feature_names].head(len(SPEC.example))
    assert [tuple(row) for row in first.to_numpy(float)] == list(SPEC.example)

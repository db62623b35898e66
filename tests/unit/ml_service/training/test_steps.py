from ml_service.training.provenance import code_version
from ml_service.training.steps import StepRunner

CALLS: list[tuple] = []


def double(values, key):
    CALLS.append((tuple(values), key))
    return [2 * v for v in values]


def test_a_repeated_step_is_served_from_the_cache(tmp_path):
    CALLS.clear()
    seen = []
    runner = StepRunner(tmp_path, on_step=lambda name, cached: seen.append((name, cached)))
    assert runner("double", double, [1, 2], "k") == [2, 4]
    assert runner("double", double, [1, 2], "k") == [2, 4]
    assert len(CALLS) == 1
    assert seen == [("double", False), ("double", True)]
    assert runner.cached == {"double": True}


def test_the_cache_survives_a_new_runner_but_not_a_new_argument(tmp_path):
    CALLS.clear()
    StepRunner(tmp_path)("double", double, [1], "k")
    again = StepRunner(tmp_path)
    again("double", double, [1], "k")
    assert again.cached["double"] and len(CALLS) == 1
    again("double", double, [1], "other")
    assert not again.cached["double"] and len(CALLS) == 2


def test_ignored_arguments_do_not_enter_the_cache_key(tmp_path):
    CALLS.clear()
    runner = StepRunner(tmp_path)
    runner("double", double, [1], "same-digest", ignore=("values",))
    assert runner("double", double, [5], "same-digest", ignore=("values",)) == [2]
    assert len(CALLS) == 1


def test_code_version_changes_with_the_source(tmp_path, monkeypatch):
    import types

    module = types.SimpleNamespace(__file__=str(tmp_path / "m.py"))
    (tmp_path / "m.py").write_text("x = 1\n")
    before = code_version(module)
    assert code_version(module) == before
    (tmp_path / "m.py").write_text("x = 2\n")
    assert code_version(module) != before


def test_a_classifier_that_never_saw_a_class_is_a_clear_error():
    """The split is by row hash, not stratified: a rare class can miss the training rows."""
    from dataclasses import replace

    import pandas as pd
    import pytest
    from sklearn.linear_model import LogisticRegression

    from diabetes_regression.spec import SPEC
    from ml_service.errors import UsageError
    from ml_service.training.pipeline import check_classes

    target = replace(SPEC.contract.target, name="kind", allowed_values=(0.0, 1.0, 2.0))
    spec = replace(SPEC, contract=replace(SPEC.contract, target=target), output="predict_proba")
    train = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "kind": [0.0, 0.0, 1.0, 1.0]})
    model = LogisticRegression().fit(train[["x"]], train["kind"])
    with pytest.raises(UsageError) as refused:
        check_classes(spec, model, train)
    assert str(refused.value) == (
        "the classifier learnt the classes [0.0, 1.0] from 4 training rows (0: 2, 1: 2), but "
        "the contract's target kind allows [0.0, 1.0, 2.0]: every allowed class needs "
        "training rows (add data, or change allowed_values)")
    check_classes(replace(spec, contract=replace(spec.contract, target=replace(
        target, allowed_values=(0.0, 1.0)))), model, train)  # exactly its classes: fine

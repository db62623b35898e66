"""Is a model spec complete? One function a team runs on its own spec.

In the spirit of scikit-learn's ``check_estimator``::

    from ml_service.conformance import check_spec
    from my_model.spec import SPEC

    check_spec(SPEC)   # raises SpecError listing every problem

``mlops check`` runs it on the installed model. Each check is independent, so
one run reports every problem at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ml_service.contract import DataContract
from ml_service.errors import UsageError
from ml_service.spec import OUTPUTS, ModelSpec

if TYPE_CHECKING:
    import pandas as pd

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class SpecError(UsageError):
    """A model spec failed the conformance checks.

    Attributes:
        problems: One sentence per failed check.
    """

    def __init__(self, name: str, problems: list[str]):
        super().__init__(f"model spec '{name}' is not usable:\n"
                         + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


def check_spec(spec: ModelSpec, fit: bool = True,
               data: Callable[[], pd.DataFrame] | None = None) -> list[str]:
    """Check ``spec`` against everything the machinery relies on.

    Args:
        spec: The spec to check.
        fit: Also fit the estimator on the spec's own example dataset (or
            ``data``), score it with every metric, and check that skops can
            save and load it with the types the spec trusts.
        data: The dataset to fit on when the spec has no ``reference_data``
            (``mlops check`` passes the configured data file when it exists).

    Returns:
        The names of the checks that ran (all passed).

    Raises:
        SpecError: Listing every check that failed.
    """
    checks: list[tuple[str, Callable[[ModelSpec], None]]] = [
        ("name", _check_name),
        ("contract", lambda s: _check_contract(s.contract)),
        ("metrics", _check_metrics),
        ("config", _check_config),
        ("estimator factory", _check_factory),
        ("example payload", _check_example),
        ("output and prediction range", _check_output),
        ("slice and partition columns", _check_columns),
        ("trusted types", _check_trusted_types),
    ]
    source = spec.reference_data or data
    if fit and source is not None:
        checks.append(("fit, score and save the example dataset",
                       lambda s: _check_fit(s, source)))
    problems: list[str] = []
    for name, check in checks:
        try:
            check(spec)
        except Exception as exc:  # noqa: BLE001 - each failure is one problem
            problems.append(f"{name}: {exc}")
    if problems:
        raise SpecError(getattr(spec, "name", "?"), problems)
    return [name for name, _ in checks]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_name(spec: ModelSpec) -> None:
    _require(isinstance(spec, ModelSpec), f"expected a ModelSpec, got {type(spec).__name__}")
    _require(bool(_NAME.fullmatch(spec.name)),
             f"'{spec.name}' is not a usable registered-model and image name (letters, digits, "
             ". _ -; starting with a letter or digit)")


def _check_contract(contract: DataContract) -> None:
    _require(bool(contract.features), "declares no features")
    names = [f.name for f in (*contract.features, contract.target)]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    _require(not duplicates, f"column names used twice: {duplicates}")
    _require(contract.min_rows >= 1, f"min_rows must be at least 1, got {contract.min_rows}")
    for f in (*contract.features, contract.target):
        _require(bool(f.name) and f.name.strip() == f.name, f"column name {f.name!r} is blank "
                 "or padded")
        _require(bool(np.isfinite([f.minimum, f.maximum]).all()) and f.minimum <= f.maximum,
                 f"'{f.name}': range [{f.minimum}, {f.maximum}] is empty or not finite")
        low, high = f.mean_range
        _require(f.minimum <= low <= high <= f.maximum,
                 f"'{f.name}': mean_range {f.mean_range} is not inside [{f.minimum}, "
                 f"{f.maximum}]")
        if f.allowed_values is not None:
            outside = [v for v in f.allowed_values if not f.minimum <= v <= f.maximum]
            _require(bool(f.allowed_values) and not outside,
                     f"'{f.name}': allowed_values {list(f.allowed_values)} are empty or outside "
                     "the range")


def _check_metrics(spec: ModelSpec) -> None:
    _require(bool(spec.metrics), "declares no metrics")
    names = spec.metric_names
    _require(len(set(names)) == len(names), f"metric names used twice: {names}")
    for metric in spec.metrics:
        _require(callable(metric.function), f"'{metric.name}' has no callable function")
        _require(isinstance(metric.greater_is_better, bool),
                 f"'{metric.name}': greater_is_better must be True or False, not "
                 f"{metric.greater_is_better!r} (its direction must be known)")


def _check_config(spec: ModelSpec) -> None:
    from ml_service.training.config import load_config

    load_config(spec.config_path, spec)


def _params(spec: ModelSpec) -> dict[str, Any]:
    from ml_service.training.config import load_config

    return dict(load_config(spec.config_path, spec).model)


def _check_factory(spec: ModelSpec) -> None:
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    estimator = spec.build_estimator(_params(spec))
    for method in ("fit", spec.output):
        _require(callable(getattr(estimator, method, None)),
                 f"the estimator it returns ({type(estimator).__name__}) has no {method}()")
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        pass
    else:
        raise ValueError("it returned a fitted estimator: return a new, unfitted one")
    clone(estimator)  # scikit-learn's rules: parameters only in __init__
    _require(spec.build_estimator(_params(spec)) is not estimator,
             "it returned the same object twice: build a new estimator on every call")


def _check_example(spec: ModelSpec) -> None:
    from ml_service.serving.validation import RowValidator

    _require(bool(spec.example), "no example rows: the /docs example and smoke test need one")
    RowValidator(spec.contract, max_rows=len(spec.example))([list(r) for r in spec.example])


def _check_output(spec: ModelSpec) -> None:
    _require(spec.output in OUTPUTS, f"output must be one of {OUTPUTS}, got {spec.output!r}")
    low, high = spec.prediction_range
    _require(bool(np.isfinite([low, high]).all()) and low < high,
             f"prediction_range {spec.prediction_range} must be finite with low < high")
    _require(0.0 < spec.threshold < 1.0,
             f"threshold {spec.threshold} must be a probability strictly between 0 and 1")
    if spec.output == "predict_proba":
        classes = spec.classes
        _require(len(classes) >= 2 and len(set(classes)) == len(classes),
                 f"a classifier's target {spec.contract.target.name} must allow at least two "
                 f"distinct classes (its allowed_values), got {list(classes)}")
        _require(len(classes) == 2 or not spec.partition_keys,
                 "a many-models set serves one number per row: multi-class partition models "
                 "are not supported yet")


def _check_columns(spec: ModelSpec) -> None:
    columns = set(spec.contract.columns)
    unknown = sorted({s.column for s in spec.slices} - columns)
    _require(not unknown, f"slices {unknown} are not columns of the contract")
    for cut in spec.slices:
        _require(list(cut.bins) == sorted(set(cut.bins)),
                 f"slice {cut.column}: bins {list(cut.bins)} must increase strictly")
    # Partition keys choose a model; they are columns of the dataset, not inputs.
    keys = list(spec.partition_keys)
    _require(len(set(keys)) == len(keys), f"partition_keys {keys} repeat a column")
    inputs = sorted(set(keys) & columns)
    _require(not inputs, f"partition_keys {inputs} are also contract columns: a key chooses "
                         "the model, it is not one of its inputs")


#: Modules whose types can run code or reach the system when constructed: a
#: model never needs them, and trusting one would make skops loading unsafe.
_NEVER_TRUSTED = ("builtins", "__builtin__", "os", "posix", "nt", "sys", "subprocess", "shutil",
                  "pickle", "_pickle", "marshal", "importlib", "runpy", "code", "codeop",
                  "types", "functools", "operator", "ctypes", "io", "socket", "pathlib",
                  "webbrowser", "pty", "joblib", "cloudpickle", "dill")


def _check_trusted_types(spec: ModelSpec) -> None:
    types = list(spec.trusted_types)
    _require(all(isinstance(t, str) for t in types), "trusted_types must be strings")
    malformed = [t for t in types if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+", t)]
    _require(not malformed, f"trusted_types {malformed} are not dotted type names such as "
                            "sklearn.tree._tree.Tree")
    unsafe = [t for t in types if t.split(".")[0] in _NEVER_TRUSTED]
    _require(not unsafe, f"trusted_types {unsafe} come from modules that can run code or reach "
                         "the system: a model never needs them, so they are never trusted")


def _check_saved(spec: ModelSpec, model: Any) -> None:
    """skops saves ``model`` and finds no type that neither it nor the spec trusts."""
    import skops.io

    needed = set(skops.io.get_untrusted_types(data=skops.io.dumps(model)))
    missing = sorted(needed - set(spec.trusted_types))
    _require(not missing, f"the fitted model holds types skops does not trust by default: "
                          f"{missing}. Add them to the spec's trusted_types (ModelSpec("
                          f"trusted_types=({', '.join(repr(t) for t in missing)},))) after "
                          "reviewing them: loading the model may construct each of them")


def _check_fit(spec: ModelSpec, source: Callable[[], pd.DataFrame]) -> None:
    from ml_service.training.validation import validate_frame

    frame = source()
    if spec.partition_keys:
        # A set: one partition of the example dataset must train like a single model.
        missing = [k for k in spec.partition_keys if k not in frame.columns]
        _require(not missing, f"the example dataset has no partition key column {missing}")
        _, frame = next(iter(frame.groupby(list(spec.partition_keys), sort=True)))
        frame = frame[spec.contract.columns].reset_index(drop=True)
    report = validate_frame(frame, spec.contract)
    _require(report.success, f"the example dataset breaks the contract: {report.summary()}")
    contract = spec.contract
    model = spec.build_estimator(_params(spec))
    model.fit(frame[contract.feature_names], frame[contract.target.name])
    predicted = spec.predict(model, frame[contract.feature_names])
    classes = spec.classes
    expected = (len(frame), len(classes)) if len(classes) > 2 else (len(frame),)
    _require(predicted.shape == expected,
             f"{spec.output}() gave shape {predicted.shape}, expected {expected}")
    if classes:
        learnt = list(getattr(model, "classes_", []))
        _require(all(isinstance(c, (int, float, np.number)) for c in learnt),
                 f"the classifier's classes {learnt[:5]} are not numbers: write the classes "
                 "as numbers in the dataset (e.g. 0 benign, 1 malignant) and list them in "
                 f"{contract.target.name}.allowed_values")
        fitted = [float(c) for c in learnt]
        _require(fitted == list(classes),
                 f"the fitted classifier's classes_ {fitted} are not the target's allowed "
                 f"values {list(classes)}: the example dataset must hold every class, and "
                 f"{contract.target.name}.allowed_values must list exactly those")
    scores = spec.score(frame[contract.target.name].to_numpy(), predicted)
    bad = [name for name, value in scores.items() if not np.isfinite(value)]
    _require(not bad, f"metrics {bad} are not finite numbers on the example dataset")
    if not spec.partition_keys:  # a set's partition models are kept in its signed archive
        _check_saved(spec, model)

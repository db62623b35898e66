"""The model plug-in: what the machinery needs to know about a model, in one object.

A model package declares one :class:`ModelSpec` and registers it as an entry
point of its ``pyproject.toml``::

    [project.entry-points."mlops.models"]
    my-model = "my_model.spec:SPEC"

:func:`load_spec` finds it by that entry point (the one named by
``MLOPS_MODEL``, or the only one installed); ``ml_service`` never imports a
model package by name. :func:`ml_service.conformance.check_spec` tells a team
whether its spec is complete.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ml_service.contract import DataContract
from ml_service.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mlops.models"

#: How a fitted estimator's output becomes the served prediction: ``predict``
#: (regression, labels) or ``predict_proba`` (a classifier: the probability of
#: the last class of a binary one, each class's probability of a multi-class
#: one; the answer also carries labels, see :func:`labels`).
Output = Literal["predict", "predict_proba"]
OUTPUTS: tuple[str, ...] = ("predict", "predict_proba")

MetricFunction = Callable[[np.ndarray, np.ndarray], float]
PlotFunction = Callable[[np.ndarray, np.ndarray], dict[str, bytes]]


@dataclass(frozen=True)
class Metric:
    """A holdout metric and its direction.

    Attributes:
        name: Short name, as in the config's gate section and MLflow.
        function: ``function(y_true, y_pred)`` -> float; ``y_pred`` is what
            :meth:`ModelSpec.predict` returns: the prediction, the probability
            of the last class of a binary classifier, or the (rows, classes)
            probability matrix of a multi-class one.
        greater_is_better: True for scores (R², ROC AUC), False for errors.
    """

    name: str
    function: MetricFunction
    greater_is_better: bool


@dataclass(frozen=True)
class Slice:
    """A way to cut the holdout into groups, each scored apart (metrics by slice).

    Attributes:
        column: A contract column.
        bins: Interior edges for a numeric column, e.g. ``(40, 60)`` gives the
            groups ``<40``, ``40-60`` and ``>=60``; empty to group by value.
    """

    column: str
    bins: tuple[float, ...] = ()

    @property
    def name(self) -> str:
        """The slice's name in reports: its column."""
        return self.column

    def groups(self, frame: pd.DataFrame) -> pd.Series:
        """Each row's group label."""
        import pandas as pd

        values = frame[self.column]
        if not self.bins:
            return values.map(lambda v: f"{v:g}" if isinstance(v, float) else str(v))
        edges = [f"{b:g}" for b in self.bins]
        labels = [f"<{edges[0]}"] + [f"{a}-{b}" for a, b in zip(edges, edges[1:])]
        labels.append(f">={edges[-1]}")
        index = np.digitize(values.to_numpy(dtype=float), np.asarray(self.bins, dtype=float))
        return pd.Series(np.asarray(labels, dtype=object)[index], index=frame.index)


@dataclass(frozen=True)
class ModelSpec:
    """Everything ``ml_service`` needs to train, gate, serve and watch one model.

    Attributes:
        name: Default registered model, experiment and image name
            (``MLOPS_MODEL_NAME`` overrides it).
        contract: Features, target and their valid ranges.
        build_estimator: Params (the config's ``model`` section) in, an
            unfitted scikit-learn estimator out.
        metrics: Holdout metrics with their direction; the gate may use any.
        config_path: The version-controlled YAML of ML parameters.
        example: Example rows for ``POST /score`` (lists in contract order).
        prediction_range: Typical (low, high) of a prediction: the bounds of
            the ``/metrics`` prediction histogram.
        data_path: Default dataset CSV, relative to the working directory.
        output: ``predict`` or ``predict_proba`` (see :data:`Output`).
        plots: ``plots(y_true, y_pred)`` -> PNG bytes by file name, logged
            with the run; None for no plots.
        reference_data: Returns the dataset to write to ``data_path``
            (``mlops data``); None if the team brings its own file.
        description: One line on what the model predicts, for people.
        slices: Groups of the holdout (by a column's value or bands) that the
            evaluation scores apart; the gate can refuse a candidate worse
            than the champion on one of them.
        limitations: Known limits, for the model card.
        partition_keys: For many-models specs: the columns naming a partition.
        threshold: A binary classifier's decision threshold: rows whose
            probability of the last class is at least this get its label. The
            classes are the target's ``allowed_values`` (default 0 and 1).
        trusted_types: Types beyond skops' defaults that the fitted model holds
            and that loading it may construct, e.g.
            ``sklearn.tree._tree.Tree`` for a random forest. Reviewed like code
            (each is a class skops will build from the file); registration,
            the gate, bundle, serving and drift trust the defaults plus exactly
            these. ``mlops check`` lists what a fitted model needs.
        package: The model's import package; set by :func:`load_spec` from the
            entry point. Its source files are part of the training cache key.
    """

    name: str
    contract: DataContract
    build_estimator: Callable[[Mapping[str, Any]], Any]
    metrics: tuple[Metric, ...]
    config_path: Path
    example: tuple[tuple[float, ...], ...]
    prediction_range: tuple[float, float]
    data_path: Path
    output: Output = "predict"
    plots: PlotFunction | None = None
    reference_data: Callable[[], pd.DataFrame] | None = None
    description: str = ""
    slices: tuple[Slice, ...] = ()
    limitations: tuple[str, ...] = ()
    partition_keys: tuple[str, ...] = ()
    threshold: float = 0.5
    trusted_types: tuple[str, ...] = ()
    package: str = ""

    @property
    def metric_names(self) -> list[str]:
        """Names of the metrics, in declaration order."""
        return [m.name for m in self.metrics]

    def metric(self, name: str) -> Metric:
        """The metric called ``name``.

        Raises:
            KeyError: If the spec has no such metric.
        """
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise KeyError(name)

    def greater_is_better(self, name: str) -> bool:
        """Whether a larger value of metric ``name`` is better."""
        return self.metric(name).greater_is_better

    def score(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        """Every metric of ``y_pred`` against ``y_true``."""
        return {m.name: float(m.function(y_true, y_pred)) for m in self.metrics}

    @property
    def classes(self) -> tuple[float, ...]:
        """A classifier's classes, in its ``classes_`` order: the target's allowed values.

        Empty for ``output="predict"``; (0, 1) for a classifier whose target
        declares no ``allowed_values``.
        """
        return classes_of(self.contract, self.output)

    def predict(self, model: Any, rows: Any) -> np.ndarray:
        """What the metrics score: see :func:`predictions`."""
        return predictions(model, rows, self.output)


def classes_of(contract: DataContract, output: str) -> tuple[float, ...]:
    """The classes of a model with this contract and output (see :attr:`ModelSpec.classes`)."""
    if output != "predict_proba":
        return ()
    allowed = contract.target.allowed_values
    return tuple(sorted(float(v) for v in allowed)) if allowed else (0.0, 1.0)


def predictions(model: Any, rows: Any, output: str) -> np.ndarray:
    """``model``'s prediction for ``rows``, as floats.

    Args:
        model: A fitted scikit-learn estimator.
        rows: Feature matrix or DataFrame in contract order.
        output: ``predict``, or ``predict_proba``.

    Returns:
        ``predict``: one value per row. ``predict_proba``: a binary
        classifier's probability of its last class, one per row; a
        multi-class one's (rows, classes) matrix of probabilities.
    """
    if output == "predict_proba":
        probabilities = np.asarray(model.predict_proba(rows), dtype=float)
        if probabilities.ndim != 2 or probabilities.shape[1] < 2:
            raise ValueError(f"predict_proba gave shape {probabilities.shape}: the classifier "
                             "learnt fewer than two classes (its training rows held one)")
        return probabilities[:, -1] if probabilities.shape[1] == 2 else probabilities
    return np.asarray(model.predict(rows), dtype=float).reshape(-1)


def labels(predicted: np.ndarray, classes: Sequence[float], threshold: float) -> np.ndarray:
    """Each row's class, from :func:`predictions` of a classifier.

    A binary classifier's last class where its probability is at least
    ``threshold``, else the first; a multi-class one's most probable class.
    """
    known = np.asarray(classes, dtype=float)
    chosen: np.ndarray = (known[np.argmax(predicted, axis=1)] if predicted.ndim == 2
                          else np.where(predicted >= threshold, known[-1], known[0]))
    return chosen


def point_predictions(predicted: np.ndarray, classes: Sequence[float]) -> np.ndarray:
    """One number per row, as logged, counted on ``/metrics`` and watched for drift.

    The prediction itself, except for a multi-class classifier: its label
    (the probability matrix has no single column to watch).
    """
    if predicted.ndim == 2:
        return labels(predicted, classes, 0.5)
    return predicted


def installed_models() -> dict[str, EntryPoint]:
    """The model entry points installed in this environment, by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def project_default_model(directory: Path | None = None) -> str | None:
    """The ``model`` of the ``[tool.mlops]`` table of ``pyproject.toml`` in ``directory``.

    A fork with several model packages names its default there, so that
    ``make pipeline`` needs no MLOPS_MODEL; None if the file or key is absent.

    Raises:
        UsageError: If the file is not valid TOML or the key is not a string.
    """
    import tomllib

    path = (directory or Path.cwd()) / "pyproject.toml"
    try:
        table = tomllib.loads(path.read_text()).get("tool", {}).get("mlops", {})
    except FileNotFoundError:
        return None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None
    value = table.get("model")
    if value is not None and not isinstance(value, str):
        raise UsageError(f"{path}: [tool.mlops] model must be a string, got {value!r}")
    return value


def load_spec(name: str | None = None) -> ModelSpec:
    """Load the spec of the model named ``name`` (``MLOPS_MODEL``), or the default.

    Without a name: the ``[tool.mlops] model`` of ``./pyproject.toml``, else the
    only model installed.

    Raises:
        UsageError: If no model is installed, ``name`` is not installed, several
            are installed and none is chosen, or the entry point is no spec.
    """
    found = installed_models()
    if not found:
        raise UsageError(
            f"no model package is installed: register a ModelSpec under the entry-point "
            f"group '{ENTRY_POINT_GROUP}' in pyproject.toml and run `make install`"
        )
    if name is None:
        name = project_default_model()
    if name is None:
        if len(found) > 1:
            raise UsageError(
                f"several models are installed ({', '.join(sorted(found))}): choose one "
                "with MLOPS_MODEL, or name the default as `model` in the [tool.mlops] "
                "table of ./pyproject.toml"
            )
        name = next(iter(found))
    if name not in found:
        raise UsageError(
            f"MLOPS_MODEL={name} is not an installed model; installed: "
            f"{', '.join(sorted(found))}"
        )
    entry = found[name]
    try:
        spec = entry.load()
    except Exception as exc:  # noqa: BLE001 - any import error of a team's package
        raise UsageError(
            f"model '{name}' ({entry.value}) could not be imported: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(spec, ModelSpec):
        raise UsageError(
            f"entry point '{name}' ({entry.value}) is a {type(spec).__name__}, not a "
            "ml_service.spec.ModelSpec"
        )
    if not spec.package:
        spec = replace(spec, package=entry.value.split(":")[0].split(".")[0])
    logger.info("model %s from %s", name, entry.value)
    return spec


def example_payload(spec: ModelSpec) -> dict[str, list[list[float]]]:
    """The spec's example rows as a ``POST /score`` body."""
    return {"data": [list(row) for row in spec.example]}


def as_rows(values: Sequence[Sequence[float]]) -> tuple[tuple[float, ...], ...]:
    """Helper for specs: example rows as the nested tuples a frozen spec keeps."""
    return tuple(tuple(float(v) for v in row) for row in values)

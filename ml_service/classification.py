"""Ready-made metrics for classifiers, and the per-class figures of a model card.

A multi-class spec's metrics receive the (rows, classes) probability matrix
(:func:`ml_service.spec.predictions`); these score it the way users expect::

    from ml_service.classification import multiclass_metrics

    SPEC = ModelSpec(..., output="predict_proba", metrics=multiclass_metrics((0, 1, 2)))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ml_service.spec import Metric, labels


def multiclass_metrics(classes: Sequence[float]) -> tuple[Metric, ...]:
    """Log loss, macro F1, one-vs-rest ROC AUC (macro) and accuracy of a multi-class model.

    Args:
        classes: The classes in the model's order (the target's allowed values).
    """
    from sklearn import metrics as skm

    known = [float(c) for c in classes]

    def log_loss(y: np.ndarray, p: np.ndarray) -> float:
        return float(skm.log_loss(y, p, labels=known))

    def macro_f1(y: np.ndarray, p: np.ndarray) -> float:
        return float(skm.f1_score(y, labels(p, known, 0.5), labels=known, average="macro",
                                  zero_division=0))

    def roc_auc_ovr(y: np.ndarray, p: np.ndarray) -> float:
        # Raises ValueError when a class is absent from y: the gate and the
        # slices treat that as "cannot score this sample".
        return float(skm.roc_auc_score(y, p, multi_class="ovr", average="macro", labels=known))

    def accuracy(y: np.ndarray, p: np.ndarray) -> float:
        return float(skm.accuracy_score(y, labels(p, known, 0.5)))

    return (
        Metric("log_loss", log_loss, greater_is_better=False),
        Metric("macro_f1", macro_f1, greater_is_better=True),
        Metric("roc_auc_ovr", roc_auc_ovr, greater_is_better=True),
        Metric("accuracy", accuracy, greater_is_better=True),
    )


def per_class(y_true: np.ndarray, predicted: np.ndarray, classes: Sequence[float],
              threshold: float) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support of each class, and how often it is predicted.

    Args:
        y_true: The holdout's classes.
        predicted: The classifier's :func:`ml_service.spec.predictions` for it.
        classes: The classes in the model's order.
        threshold: A binary classifier's decision threshold.
    """
    from sklearn import metrics as skm

    known = [float(c) for c in classes]
    chosen = labels(predicted, known, threshold)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        np.asarray(y_true, dtype=float), chosen, labels=known, zero_division=0)
    return [
        {"class": label_text(c), "precision": float(p), "recall": float(r), "f1": float(f),
         "support": int(s), "predicted": int(np.sum(chosen == c))}
        for c, p, r, f, s in zip(known, precision, recall, f1, support, strict=True)
    ]


def label_text(value: float) -> str:
    """A class as JSON keys show it: ``2`` for 2.0, else the shortest exact form (``0.5``)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))

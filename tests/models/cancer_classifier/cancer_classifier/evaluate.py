"""Classification metrics on the predicted probability of "benign"."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from ml_service.spec import Metric


def accuracy(y_true: np.ndarray, p: np.ndarray) -> float:
    """Share of correct diagnoses at a 0.5 threshold."""
    return float(skm.accuracy_score(y_true, p >= 0.5))


METRICS = (
    Metric("roc_auc", lambda y, p: float(skm.roc_auc_score(y, p)), greater_is_better=True),
    Metric("accuracy", accuracy, greater_is_better=True),
    Metric("log_loss", lambda y, p: float(skm.log_loss(y, p, labels=[0, 1])),
           greater_is_better=False),
)

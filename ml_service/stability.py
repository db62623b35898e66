"""The population stability index, shared by drift (monitoring) and the canary's
analysis (release), which compare distributions as histograms."""

from __future__ import annotations

import numpy as np


def psi_of_counts(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of ``actual`` against ``expected``, two histograms
    over the same bins (counts). Empty bins get a small floor so the index stays
    finite; 0.1-0.25 is commonly read as a moderate shift, above 0.25 a large one.
    """
    expected, actual = np.asarray(expected, float), np.asarray(actual, float)
    expected, actual = expected / expected.sum(), actual / actual.sum()
    expected, actual = np.clip(expected, 1e-4, None), np.clip(actual, 1e-4, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))

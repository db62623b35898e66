"""The population stability index, shared by drift (monitoring) and the canary's
analysis (release), which compare distributions as histograms."""

from __future__ import annotations

import numpy as np


def psi_of_counts(expected: np.ndarray, actual: np.ndarray, smoothing: float = 0.0) -> float:
    """Population stability index of ``actual`` against ``expected``, two histograms
    over the same bins (counts). Empty bins get a small floor so the index stays
    finite; 0.1-0.25 is commonly read as a moderate shift, above 0.25 a large one.

    ``smoothing`` is added to every count first (0.5: Jeffreys' prior): for a
    histogram of a few dozen values, where an empty bin is chance, not a shift
    (the floor alone would make one bin worth about 0.1).
    """
    expected = np.asarray(expected, float) + smoothing
    actual = np.asarray(actual, float) + smoothing
    expected, actual = expected / expected.sum(), actual / actual.sum()
    expected, actual = np.clip(expected, 1e-4, None), np.clip(actual, 1e-4, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))

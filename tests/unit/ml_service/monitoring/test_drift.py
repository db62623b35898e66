"""The population stability index on continuous and discrete columns."""

from __future__ import annotations

import numpy as np

from ml_service.monitoring.drift import psi


def test_a_shift_between_two_classes_is_seen_whichever_classes_they_are():
    """A classifier's predicted class: 61 of 178 rows move from class 1 to class 2."""
    reference = np.repeat([0.0, 1.0, 2.0], [59, 71, 48])
    shifted = np.repeat([0.0, 1.0, 2.0], [59, 10, 109])
    assert psi(reference, reference) == 0.0
    assert psi(reference, shifted) > 0.5  # far above the usual 0.2 alarm
    assert psi(reference, np.repeat([0.0, 1.0, 2.0], [10, 71, 97])) > 0.5


def test_a_continuous_column_is_binned_by_the_references_quantiles():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=5000)
    assert psi(reference, rng.normal(size=5000)) < 0.02  # the same distribution
    assert psi(reference, rng.normal(0.5, 1, size=5000)) > 0.2  # half a standard deviation

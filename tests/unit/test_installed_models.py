"""Every installed model passes the conformance suite: a team's model is tested here too.

The models are the entry points of the group ``mlops.models`` in this
environment: the examples, and any package a team installs as the README
says. Adding a model adds cases here; it never breaks the others.
"""

from __future__ import annotations

import pytest

from ml_service.conformance import check_spec
from ml_service.spec import installed_models, load_spec


@pytest.mark.parametrize("name", sorted(installed_models()))
def test_the_installed_model_passes_every_conformance_check(name):
    spec = load_spec(name)
    passed = check_spec(spec)
    assert "trusted types" in passed
    if spec.reference_data is not None:  # fitted, scored and saved with skops
        assert "fit, score and save the example dataset" in passed

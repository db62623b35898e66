"""The suite runs the same whatever the caller's shell exports."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO


def test_settings_exported_by_the_caller_do_not_reach_the_tests():
    """A developer who exported another model's settings (as the README's "adapt it" steps
    have them do) still gets a green run of the example's own tests."""
    probe = ("tests/unit/diabetes_regression/test_spec.py::"
             "test_the_spec_is_registered_as_the_diabetes_entry_point")
    leaked = {"MLOPS_MODEL": "sales", "MLOPS_MODEL_NAME": "leaked-name",
              "MLOPS_API_KEYS": "a-developers-own-key-0123456789"}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "-p", "no:xdist", probe], cwd=REPO, env={**clean, **leaked},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout

"""Errors a user can cause, each with the CLI exit code it maps to.

The CLI turns these into one clear message; everything else is a bug and exits 1.
"""

from __future__ import annotations


class MlopsError(Exception):
    """A failure with a message meant for the user (exit code 1)."""

    exit_code = 1


class UsageError(MlopsError):
    """Bad command-line input or configuration (exit code 2)."""

    exit_code = 2


class DataValidationError(MlopsError):
    """The dataset broke the data contract; nothing was trained (exit code 3).

    Attributes:
        report: The validation report with every failed expectation.
    """

    exit_code = 3

    def __init__(self, message: str, report: object = None):
        super().__init__(message)
        self.report = report


class TrackingError(MlopsError):
    """The MLflow tracking store or registry could not be used (exit code 1)."""


class DriftDetected(MlopsError):
    """`mlops drift` found drift above the thresholds (exit code 4)."""

    exit_code = 4


class ShadowFlagged(MlopsError):
    """`mlops shadow-report` found the shadow worse than production (exit code 4)."""

    exit_code = 4

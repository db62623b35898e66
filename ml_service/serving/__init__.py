"""Serving: the scoring app, its request validation, and the scoring log."""

from ml_service.serving.app import ModelIntegrityError, create_app, load_bundle

__all__ = ["ModelIntegrityError", "create_app", "load_bundle"]

"""The MLflow tracking store and model registry, behind a small typed interface."""

from ml_service.registry.store import CHAMPION, Registry, VersionInfo, connect

__all__ = ["CHAMPION", "Registry", "VersionInfo", "connect"]

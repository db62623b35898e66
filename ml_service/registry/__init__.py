"""The MLflow tracking store and model registry, behind a small typed interface."""

from ml_service.registry.store import CHAMPION, Registry, connect
from ml_service.registry.versions import VersionInfo

__all__ = ["CHAMPION", "Registry", "VersionInfo", "connect"]

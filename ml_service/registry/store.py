"""The MLflow tracking store and model registry, behind a small interface.

Works the same on the embedded SQLite store and on any MLflow server; the only
difference is where ``Settings`` points the URIs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ml_service.errors import MlopsError, TrackingError
from ml_service.redact import redact_text
from ml_service.registry.lock import RegistryLock
from ml_service.registry.versions import VersionInfo
from ml_service.settings import Settings

logger = logging.getLogger(__name__)

CHAMPION = "champion"


class Registry:
    """One registered model in one MLflow tracking store.

    Build it with :func:`connect`, which checks that the store answers.
    """

    def __init__(self, settings: Settings, trusted_types: Sequence[str] = ()):
        from mlflow import MlflowClient

        self.settings = settings
        self.name = settings.model_name
        #: The spec's ``trusted_types``: what :meth:`load_model` trusts beyond skops' defaults.
        self.trusted_types = tuple(trusted_types)
        self.client = MlflowClient(
            tracking_uri=settings.resolved_tracking_uri,
            registry_uri=settings.resolved_tracking_uri,
        )

    def experiment_id(self) -> str:
        """Return the id of the configured experiment, creating it if needed."""
        from mlflow.exceptions import MlflowException

        name = self.settings.experiment_name
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(
                name, artifact_location=self.settings.artifact_location
            )
        except MlflowException as exc:
            # Another pipeline created it between our two calls.
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            existing = self.client.get_experiment_by_name(name)
            if existing is None:  # created and deleted again meanwhile
                raise
            return str(existing.experiment_id)

    def alias_version(self, alias: str) -> int | None:
        """Version number the alias points to, or None if it is not set."""
        from mlflow.exceptions import MlflowException

        try:
            return int(self.client.get_model_version_by_alias(self.name, alias).version)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower():
                return None
            raise

    def load_model(self, version: int) -> Any:
        """Load the scikit-learn model of ``version``, never running code from the registry.

        The version is verified against its signature first (see
        :mod:`ml_service.registry.signed`).

        Raises:
            SignatureError: If the version is not signed by a trusted key.
            MlopsError: If it is not a skops model of default-trusted types
                (pickle formats and foreign types are refused, not loaded).
        """
        import tempfile
        from pathlib import Path

        from ml_service.bundle import checked_model_file, load_skops

        from ml_service.registry.signed import download_verified

        what = f"{self.name} version {version}"
        with tempfile.TemporaryDirectory() as tmp:
            local = download_verified(self, version, Path(tmp))
            _, model_file = checked_model_file(local, what)
            return load_skops(model_file, what, self.trusted_types)

    def sample_partition(self, version: int) -> tuple[dict[str, Any], Any]:
        """For a many-models set: its first partition's key values and (checked) model."""
        import tempfile
        from pathlib import Path

        from ml_service.registry.signed import download_set

        with tempfile.TemporaryDirectory() as tmp:
            models = download_set(self, version, Path(tmp))
            try:
                key = models.keys[0]
                model = models.load(key)
            finally:
                models.close()
        values: dict[str, Any] = {}
        for part in key.split("/"):
            name, value = part.split("=", 1)
            try:
                values[name] = int(value)
            except ValueError:
                values[name] = value
        return values, model

    def get_version(self, version: int) -> VersionInfo:
        """One version's info.

        Raises:
            MlopsError: If the version is not registered.
        """
        for info in self.versions():
            if info.version == int(version):
                return info
        raise MlopsError(f"{self.name} has no version {version}; see `mlops status`")

    def versions(self) -> list[VersionInfo]:
        """All versions of the model, newest first, with their aliases and tags."""
        found = self.client.search_model_versions(f"name = '{self.name}'")
        if not found:
            return []
        # Version search results do not carry aliases on every store; the
        # registered model does.
        aliases: dict[int, list[str]] = {}
        for alias, version in (self.client.get_registered_model(self.name).aliases or {}).items():
            aliases.setdefault(int(version), []).append(alias)
        infos = []
        for mv in found:
            tags = dict(mv.tags or {})
            infos.append(
                VersionInfo(
                    version=int(mv.version),
                    aliases=sorted(aliases.get(int(mv.version), [])),
                    tags=tags,
                    run_id=mv.run_id,
                    created=int(mv.creation_timestamp or 0),
                    metrics={
                        key.removeprefix("metric."): float(value)
                        for key, value in tags.items()
                        if key.startswith("metric.")
                    },
                )
            )
        return sorted(infos, key=lambda info: info.version, reverse=True)

    def find_tagged(self, key: str, value: str) -> int | None:
        """Newest version whose tag ``key`` equals ``value``, or None."""
        for info in self.versions():
            if info.tags.get(key) == value:
                return info.version
        return None

    def register(
        self, model_uri: str, run_id: str, tags: dict[str, Any], model_id: str | None = None,
        champion: bool = True,
    ) -> int:
        """Register ``model_uri`` as a new version with ``tags``; make it the champion if asked."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(
                self.name, description="Registered by the mlops pipeline when it passes the gate."
            )
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = self.client.create_model_version(
            name=self.name,
            source=model_uri,
            run_id=run_id,
            tags={k: str(v) for k, v in tags.items()},
            model_id=model_id,
        )
        if champion:
            self.client.set_registered_model_alias(self.name, CHAMPION, version.version)
        logger.info("registered %s version %s%s", self.name, version.version,
                    f" as {CHAMPION}" if champion else "")
        return int(version.version)

    def lock(self, timeout: float = 300.0,
             stale_after: float = 900.0) -> AbstractContextManager[None]:
        """The registry's write lock for this model; see :class:`RegistryLock`."""
        return RegistryLock(self.client, self.name).hold(timeout, stale_after)

    # -- the small typed interface the release uses (ml_service.release.ports)

    def set_alias(self, alias: str, version: int) -> None:
        """Point ``alias`` at ``version``."""
        self.client.set_registered_model_alias(self.name, alias, str(version))

    def version_tags(self, version: int) -> dict[str, str]:
        """The tags of ``version``.

        Raises:
            MlopsError: If the version is not registered.
        """
        return self.get_version(version).tags

    def set_version_tag(self, version: int, key: str, value: str) -> None:
        """Set tag ``key`` of ``version``."""
        self.client.set_model_version_tag(self.name, str(version), key, value)

    def log_version_file(self, version: int, name: str, data: bytes, directory: str) -> None:
        """Store ``data`` as ``<directory>/<name>`` among the artifacts of ``version``'s run.

        Raises:
            MlopsError: If the version has no run to keep it with.
        """
        import tempfile

        run_id = self.get_version(version).run_id
        if not run_id:
            raise MlopsError(f"{self.name} version {version} has no MLflow run to keep {name}")
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / name).write_bytes(data)
            self.client.log_artifact(run_id, str(Path(tmp) / name), artifact_path=directory)

    def model_tag(self, key: str) -> str | None:
        """Tag ``key`` of the registered model, or None."""
        return (self.client.get_registered_model(self.name).tags or {}).get(key)

    def set_model_tag(self, key: str, value: str) -> None:
        """Set tag ``key`` of the registered model."""
        self.client.set_registered_model_tag(self.name, key, value)


def connect(settings: Settings, trusted_types: Sequence[str] = ()) -> Registry:
    """Point MLflow at the configured store and check that it answers.

    ``trusted_types`` are the spec's (see :attr:`ml_service.spec.ModelSpec.trusted_types`).

    Raises:
        TrackingError: If a tracking server is unreachable or the store is unusable,
            with the URI in the message.
    """
    import mlflow

    uri = settings.resolved_tracking_uri
    shown = settings.shown_tracking_uri  # what messages say: no credentials
    if settings.embedded:
        settings.store_dir.mkdir(parents=True, exist_ok=True)
    elif uri.startswith(("http://", "https://")):
        _check_server(uri, settings.server_timeout, shown)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    registry = Registry(settings, trusted_types)
    try:
        registry.experiment_id()
    except Exception as exc:  # any backend failure means the store is unusable
        text = redact_text(str(exc), uri, urlsplit(uri).password)
        if any(code in text for code in ("401", "403", "Unauthorized", "PERMISSION_DENIED")):
            raise TrackingError(
                f"the MLflow tracking server at {shown} refused this client "
                f"({text.splitlines()[0]}): set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD to a user allowed on it") from None
        raise TrackingError(f"cannot use the MLflow tracking store at {shown}: {text}") from None
    return registry


def _check_server(uri: str, timeout: float, shown: str) -> None:
    # MLflow's own client retries for minutes before failing; ask the server's
    # health endpoint once, with a deadline, so a wrong URI fails in seconds.
    import requests

    health = uri.rstrip("/") + "/health"
    try:
        response = requests.get(health, timeout=timeout)
    except requests.RequestException as exc:
        raise TrackingError(
            f"cannot reach the MLflow tracking server at {shown} ({type(exc).__name__}); "
            "check MLFLOW_TRACKING_URI, or unset it to use the embedded store"
        ) from None
    if response.status_code != 200:
        raise TrackingError(
            f"the MLflow tracking server at {shown} answered {response.status_code} on /health; "
            "is MLFLOW_TRACKING_URI an MLflow server?"
        )

"""The release's view of the outside world: two small interfaces.

The promotion state machine (:mod:`ml_service.release.promotion`) talks only to
these, so it is unit-tested with fakes; the adapters are the MLflow registry
(:class:`ml_service.registry.Registry`) and a container runtime
(:class:`ml_service.release.docker_target.DockerTarget`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ml_service.errors import MlopsError


class ReleaseError(MlopsError):
    """A release step failed; the message says what state things were left in."""


class CanaryAborted(ReleaseError):
    """A canary promotion stopped before the new version took all the traffic."""


#: Checks a running instance at ``url`` with one of its API keys; raises
#: :class:`ReleaseError` if it fails.
SmokeCheck = Callable[[str, str], None]


@dataclass
class Deployment:
    """What serves a stage."""

    stage: str
    version: int
    container: str
    image_id: str
    url: str


class ReleaseRegistry(Protocol):
    """The registry calls the release makes."""

    name: str

    def alias_version(self, alias: str) -> int | None:
        """Version the alias points to, or None."""

    def set_alias(self, alias: str, version: int) -> None:
        """Point ``alias`` at ``version``."""

    def version_tags(self, version: int) -> dict[str, str]:
        """Tags of ``version``."""

    def set_version_tag(self, version: int, key: str, value: str) -> None:
        """Set a tag of ``version``."""

    def model_tag(self, key: str) -> str | None:
        """A tag of the registered model, or None."""

    def set_model_tag(self, key: str, value: str) -> None:
        """Set a tag of the registered model."""

    def load_model(self, version: int) -> Any:
        """The fitted model of ``version``."""

    def sample_partition(self, version: int) -> tuple[dict[str, Any], Any]:
        """For a many-models set: one partition's key values and its fitted model."""


class DeployTarget(Protocol):
    """Where a stage's scoring service runs (a Docker engine, a cluster)."""

    def ensure_lasting(self) -> None:
        """Raise a UsageError if production here would not outlive this process's host."""

    def resolve_image(self, version: int, tags: Mapping[str, str]) -> str:
        """The image recorded for ``version`` (tags ``image.id``/``image.ref``), made
        available to the target; raise ReleaseError if there is none."""

    def deploy(self, stage: str, version: int, image: str, smoke: SmokeCheck,
               keep_previous: bool) -> Deployment:
        """Run ``image`` as ``stage`` and check it with ``smoke``.

        With ``keep_previous`` the stage's current instance keeps serving until
        the new one passed, and is serving again if it did not; the
        ReleaseError raised then says so. Without it the old one is replaced.
        """

    def current_version(self, stage: str) -> int | None:
        """The version the stage runs now, or None."""

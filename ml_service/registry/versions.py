"""What the registry says of a version, and the registry calls signing needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ml_service.settings import Settings


@dataclass
class VersionInfo:
    """A registered model version, as the CLI shows it."""

    version: int
    aliases: list[str]
    tags: dict[str, str]
    run_id: str | None
    created: int
    metrics: dict[str, float] = field(default_factory=dict)


class VersionStore(Protocol):
    """The registry as signing and verified downloads use it (:class:`Registry` is one)."""

    name: str
    settings: Settings

    def get_version(self, version: int) -> VersionInfo:
        """The version's tags, aliases, run and metrics."""

    def set_version_tag(self, version: int, key: str, value: str) -> None:
        """Set a tag of ``version``."""

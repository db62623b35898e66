"""What a many-models run produces (apart from the pipeline, which the card need not import)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SetResult:
    """What a many-models run did; ``as_json`` is its ``--json-out``."""

    registered: bool
    version: int | None
    champion: bool
    reason: str
    partitions: int
    counts: dict[str, int]
    rule: str
    worst: dict[str, float]
    engine: str
    chunks: int
    seconds: float
    previous_version: int | None = None
    run_id: str | None = None
    validation: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

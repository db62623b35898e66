"""The registration gate: is the candidate good enough, and better than the champion?

Pure functions over metric dicts; the registry I/O happens in ``pipeline.py``.
Which metrics are better when larger comes from the model's spec
(``higher``: the names of those metrics).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from ml_service.training.config import GateConfig


@dataclass(frozen=True)
class GateDecision:
    """Whether to register, and a sentence saying why."""

    register: bool
    reason: str
    forced: bool = False


def floor_violations(metrics: dict[str, float], floor: dict[str, float],
                     higher: Collection[str]) -> list[str]:
    """Return a message for each metric that misses its absolute floor."""
    violations = []
    for name, bound in floor.items():
        value = metrics[name]
        if name in higher and value < bound:
            violations.append(f"{name} {value:.4g} is below the floor {bound:g}")
        elif name not in higher and value > bound:
            violations.append(f"{name} {value:.4g} is above the ceiling {bound:g}")
    return violations


def relative_improvement(candidate: float, champion: float, higher_is_better: bool) -> float:
    """How much better ``candidate`` is than ``champion``, as a fraction of the champion.

    Positive means better, whatever the metric's direction.
    """
    gain = candidate - champion if higher_is_better else champion - candidate
    if champion == 0:
        return float("inf") if gain > 0 else 0.0
    return gain / abs(champion)


def decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    rules: GateConfig,
    higher: Collection[str],
    force: bool = False,
    champion_version: int | None = None,
) -> GateDecision:
    """Decide whether the candidate is registered.

    The candidate must meet every floor and, if a champion exists, beat it on the
    primary metric by at least ``rules.margin`` (relative). ``force`` registers
    regardless and marks the decision as forced; the reason records what the
    gate would have said.

    Args:
        candidate: Candidate's holdout metrics.
        champion: Champion's metrics on the same holdout, or None if there is none.
        rules: Primary metric, margin and floors from the config.
        higher: Names of the metrics where larger is better (from the spec).
        force: Register whatever the outcome.
        champion_version: The champion's version number, for the reason text.
    """
    metric = rules.primary_metric
    violations = floor_violations(candidate, rules.floor, higher)
    if violations:
        verdict, ok = "does not meet the quality floor: " + "; ".join(violations), False
    elif champion is None:
        verdict, ok = "first model: meets the quality floor", True
    else:
        label = f"champion v{champion_version}" if champion_version else "champion"
        gain = relative_improvement(candidate[metric], champion[metric], metric in higher)
        comparison = (
            f"candidate {metric} {candidate[metric]:.4f} vs {label} {champion[metric]:.4f} "
            f"({gain:+.2%}, margin {rules.margin:.2%})"
        )
        if gain >= rules.margin:
            verdict, ok = f"better than the {label}: {comparison}", True
        else:
            verdict, ok = f"not better than the {label} by the margin: {comparison}", False
    if force and not ok:
        return GateDecision(True, f"forced; the gate said: {verdict}", forced=True)
    return GateDecision(ok or force, verdict, forced=force)

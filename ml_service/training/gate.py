"""The registration gate: is the candidate good enough, and better than the champion?

Pure functions over metric dicts, the bootstrap interval and the slice results
of :mod:`ml_service.training.comparison`; the registry I/O happens in
``pipeline.py``. Which metrics are better when larger comes from the model's
spec (``higher``: the names of those metrics).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from ml_service.training.comparison import (
    Improvement,
    SliceResult,
    gain_text,
    improvement as gain_over,
    relative_improvement,
)
from ml_service.training.config import GateConfig

__all__ = ["GateDecision", "decide", "floor_violations", "relative_improvement"]


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


def decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    rules: GateConfig,
    higher: Collection[str],
    force: bool = False,
    champion_version: int | None = None,
    improvement: Improvement | None = None,
    slices: Sequence[SliceResult] = (),
) -> GateDecision:
    """Decide whether the candidate is registered.

    The candidate must meet every floor and, if a champion exists, beat it on
    the primary metric by at least ``rules.margin`` (relative or absolute,
    ``rules.margin_kind``); with ``rules.improvement.min_lower_bound`` set,
    the lower bound of the paired bootstrap interval must be above it too
    (better beyond noise, in the same kind); with
    ``rules.slices.tolerance`` set, no slice group of at least
    ``rules.slices.min_rows`` rows may be worse than the champion's by more.
    ``force`` registers regardless and marks the decision as forced; the
    reason records what the gate would have said.

    Args:
        candidate: Candidate's holdout metrics.
        champion: Champion's metrics on the same holdout, or None if there is none.
        rules: The config's gate section.
        higher: Names of the metrics where larger is better (from the spec).
        force: Register whatever the outcome.
        champion_version: The champion's version number, for the reason text.
        improvement: The bootstrap interval of the primary metric's improvement.
        slices: The primary metric per slice group, for both models.
    """
    violations = floor_violations(candidate, rules.floor, higher)
    if violations:
        verdict, ok = "does not meet the quality floor: " + "; ".join(violations), False
    elif champion is None:
        verdict, ok = "first model: meets the quality floor", True
    else:
        verdict, ok = _against_champion(candidate, champion, rules, higher, champion_version,
                                        improvement, slices)
    if force and not ok:
        return GateDecision(True, f"forced; the gate said: {verdict}", forced=True)
    return GateDecision(ok or force, verdict, forced=force)


def _against_champion(candidate: dict[str, float], champion: dict[str, float],
                      rules: GateConfig, higher: Collection[str], champion_version: int | None,
                      improvement: Improvement | None,
                      slices: Sequence[SliceResult]) -> tuple[str, bool]:
    metric = rules.primary_metric
    label = f"champion v{champion_version}" if champion_version else "champion"
    kind = rules.margin_kind
    show = gain_text(kind)
    gain = gain_over(candidate[metric], champion[metric], metric in higher, kind)
    shown = improvement.describe() if improvement is not None else show(gain)
    margin = f"{rules.margin:.2%}" if kind == "relative" else f"{rules.margin:.4g} absolute"
    comparison = (f"candidate {metric} {candidate[metric]:.4f} vs {label} "
                  f"{champion[metric]:.4f}: {shown}, margin {margin}")
    if gain < rules.margin:
        return f"not better than the {label} by the margin: {comparison}", False
    bound = rules.improvement.min_lower_bound
    if bound is not None:
        if improvement is None or not improvement.known:
            return f"not better than the {label} beyond noise: {comparison}; the rule " \
                   f"needs an interval and none could be computed", False
        if improvement.low <= bound:
            return (f"not better than the {label} beyond noise: {comparison}; the interval's "
                    f"lower bound {show(improvement.low)} is not above {show(bound)}"), False
    tolerance = rules.slices.tolerance
    if tolerance is not None:
        worse = [s for s in slices if s.change is not None and s.rows >= rules.slices.min_rows
                 and s.change < -tolerance]
        if worse:
            groups = "; ".join(s.describe() for s in worse)
            return (f"worse than the {label} on a slice beyond the tolerance "
                    f"{tolerance:.2%}: {metric} {groups} (overall {comparison})"), False
    return f"better than the {label}: {comparison}", True

"""Candidate against champion on the same holdout rows: how sure is the improvement?

The gate compares the two models on the same rows, so the comparison is
paired: each bootstrap resample draws rows (with replacement) and scores both
models on those rows. The spread of the relative improvement over the
resamples is the noise of an 80-row holdout, which a fixed margin alone
cannot see. Resampling uses :func:`scipy.stats.bootstrap` (percentile
method) with a fixed seed, so the same data always gets the same decision.

The same predictions are also scored per slice (:class:`ml_service.spec.Slice`):
a group where the candidate is worse than the champion can veto it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from ml_service.spec import Metric, Slice


@dataclass(frozen=True)
class Improvement:
    """The primary metric's relative improvement of candidate over champion.

    Positive is better whatever the metric's direction; ``low`` and ``high``
    bound the ``confidence`` interval (NaN when no resample could be scored,
    such as a classifier's holdout with a single class).
    """

    metric: str
    point: float
    low: float
    high: float
    confidence: float
    resamples: int
    seed: int
    rows: int
    #: ``relative`` (a share of the champion's value) or ``absolute`` (the metric's units).
    kind: str = "relative"

    @property
    def known(self) -> bool:
        """Whether the interval could be computed."""
        return math.isfinite(self.low) and math.isfinite(self.high)

    def describe(self) -> str:
        """``+2.10% (95% CI -1.30% to +5.20%, paired bootstrap of 80 rows)``; absolute
        improvements in the metric's units (``+0.0031 (95% CI ...)``)."""
        show = gain_text(self.kind)
        if not self.known:
            return f"{show(self.point)} (interval could not be computed on {self.rows} rows)"
        return (f"{show(self.point)} ({self.confidence:.0%} CI {show(self.low)} to "
                f"{show(self.high)}, paired bootstrap of {self.rows} rows)")

    def as_json(self) -> dict[str, Any]:
        """For ``--json-out``, tags and the model card (NaN as None)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Improvement:
        """The inverse of :meth:`as_json`."""
        values: dict[str, Any] = {k: (math.nan if v is None else v) for k, v in data.items()}
        return cls(**values)


def gain_text(kind: str) -> Any:
    """How an improvement of ``kind`` is written: ``+2.10%`` or ``+0.0031``."""
    return (lambda v: f"{v:+.2%}") if kind == "relative" else (lambda v: f"{v:+.4g}")


def improvement(candidate: float, champion: float, higher_is_better: bool,
                kind: str = "relative") -> float:
    """How much better ``candidate`` is than ``champion``: relative, or absolute (in the
    metric's units). Positive means better, whatever the metric's direction."""
    if kind == "absolute":
        return candidate - champion if higher_is_better else champion - candidate
    return relative_improvement(candidate, champion, higher_is_better)


def relative_improvement(candidate: float, champion: float, higher_is_better: bool) -> float:
    """How much better ``candidate`` is than ``champion``, as a fraction of the champion.

    Positive means better, whatever the metric's direction.
    """
    gain = candidate - champion if higher_is_better else champion - candidate
    if champion == 0:
        return float("inf") if gain > 0 else 0.0
    return gain / abs(champion)


def paired_improvement(y_true: np.ndarray, candidate: np.ndarray, champion: np.ndarray,
                       metric: Metric, confidence: float = 0.95, resamples: int = 1000,
                       seed: int = 0, kind: str = "relative") -> Improvement:
    """Bootstrap the improvement of ``metric`` (``kind``) on the same resampled rows.

    Args:
        y_true: Holdout targets.
        candidate: The candidate's predictions for those rows (what
            :meth:`ml_service.spec.ModelSpec.predict` returns).
        champion: The champion's, for the same rows in the same order.
        metric: The primary metric (its function and direction).
        confidence: Two-sided confidence level of the interval.
        resamples: Number of bootstrap resamples.
        seed: Seed of the resampling (same inputs, same interval).
    """
    from scipy.stats import bootstrap

    y_true, candidate, champion = (np.asarray(a, dtype=float) for a in
                                   (y_true, candidate, champion))
    higher = metric.greater_is_better
    rows = np.arange(len(y_true))

    def gain(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        try:
            return improvement(float(metric.function(y, a)), float(metric.function(y, b)),
                               higher, kind)
        except ValueError:  # e.g. ROC AUC of a resample holding one class
            return math.nan

    low = high = math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate (re)samples give NaN, judged by `known`
        point = gain(y_true, candidate, champion)
        if len(y_true) >= 2:
            # Resampled rows, not values: a multi-class model's predictions are
            # a (rows, classes) matrix, resampled a row at a time like the targets.
            result = bootstrap(
                (rows,), lambda i: gain(y_true[i], candidate[i], champion[i]),
                vectorized=False,
                n_resamples=resamples, confidence_level=confidence, method="percentile",
                rng=np.random.default_rng(seed),
            )
            low = float(result.confidence_interval.low)
            high = float(result.confidence_interval.high)
    return Improvement(metric=metric.name, point=point, low=low, high=high,
                       confidence=confidence, resamples=resamples, seed=seed, rows=len(y_true),
                       kind=kind)


@dataclass(frozen=True)
class SliceResult:
    """The primary metric on one group of one slice, for both models."""

    slice: str
    group: str
    rows: int
    candidate: float
    champion: float | None
    #: Relative improvement over the champion (positive is better); None without one.
    change: float | None

    def describe(self) -> str:
        """``sex=2 (38 rows): 51.2 vs 49 (-4.49%)``."""
        head = f"{self.slice}={self.group} ({self.rows} rows): {self.candidate:.4g}"
        if self.champion is None or self.change is None:
            return head
        return f"{head} vs {self.champion:.4g} ({self.change:+.2%})"


def slice_results(holdout: pd.DataFrame, y_true: np.ndarray, candidate: np.ndarray,
                  champion: np.ndarray | None, slices: tuple[Slice, ...],
                  metric: Metric) -> list[SliceResult]:
    """Score both models' predictions on every group of every slice.

    Groups too small to score (a metric raising ValueError) are left out.
    """
    results = []
    y_true, candidate = np.asarray(y_true, dtype=float), np.asarray(candidate, dtype=float)
    for spec_slice in slices:
        labels = spec_slice.groups(holdout)
        for group in sorted(labels.unique(), key=str):
            mask = (labels == group).to_numpy()
            try:
                mine = float(metric.function(y_true[mask], candidate[mask]))
                theirs = (None if champion is None
                          else float(metric.function(y_true[mask], np.asarray(champion)[mask])))
            except ValueError:
                continue
            change = (None if theirs is None
                      else relative_improvement(mine, theirs, metric.greater_is_better))
            results.append(SliceResult(spec_slice.name, str(group), int(mask.sum()), mine,
                                       theirs, change))
    return results

"""What Prometheus saw of a version's pods, for the canary's steps and the shadow's report.

Both compare one *track* of a stage's pods (pod label ``mlops-template.io/track``,
scraped as ``track``: ``canary``, ``shadow``, or the stable pods) with another
over the same window: requests, failed answers, p99 latency of ``/score`` and
the ``scoring_prediction`` histogram, whose shift is a population stability
index (:mod:`ml_service.stability`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import requests

from ml_service.release.ports import ReleaseError
from ml_service.stability import psi_of_counts


@dataclass
class Track:
    """What Prometheus saw of one track (canary or stable) over a window."""

    requests: float
    errors: float
    p99: float  # seconds; nan without requests
    predictions: dict[float, float]  # bucket upper edge -> count in the window

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


class Prometheus:
    """The HTTP query API of a Prometheus server."""

    def __init__(self, url: str, purpose: str = "the canary's analysis"):
        self.url, self.purpose = url, purpose

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        """An instant vector ``expr`` at ``at`` (Unix time).

        Raises:
            ReleaseError: If Prometheus does not answer or refuses the query.
        """
        try:
            response = requests.get(f"{self.url}/api/v1/query",
                                    params={"query": expr, "time": f"{at:.3f}"}, timeout=15)
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise ReleaseError(f"Prometheus at {self.url} (MLOPS_PROMETHEUS_URL) did not answer "
                               f"{self.purpose} ({type(exc).__name__}: {str(exc)[:200]})"
                               ) from None
        if body.get("status") != "success":
            raise ReleaseError(f"Prometheus at {self.url} refused {expr[:120]!r}: "
                               f"{body.get('error', response.text[:200])}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def scalar(self, expr: str, at: float) -> float:
        """The one value of ``expr`` (0 when the vector is empty)."""
        found = self.query(expr, at)
        return float(found[0]["value"][1]) if found else 0.0


def observe(prometheus: Prometheus, namespace: str, track: str, window: float,
            at: float) -> Track:
    """One track's requests, errors, p99 and prediction histogram over ``window`` s.

    ``track``: ``canary``, ``shadow`` or ``stable`` (the pods of neither, so
    also those deployed before the track label existed).
    """
    select = (f'namespace="{namespace}",track="{track}"' if track != "stable"
              else f'namespace="{namespace}",track!~"canary|shadow"')
    span = f"[{window:.0f}s]"
    score = f'{select},route="/score"'
    requests_ = prometheus.scalar(f"sum(increase(scoring_requests_total{{{score}}}{span}))", at)
    # Any answer but 2xx: a canary that refuses what the stable version accepts
    # (422, 401) fails its clients as surely as one that breaks (5xx).
    errors = prometheus.scalar(
        f'sum(increase(scoring_requests_total{{{score},status!~"2.."}}{span}))', at)
    p99 = prometheus.scalar(
        "histogram_quantile(0.99, sum by (le) (increase("
        f'scoring_request_seconds_bucket{{{score},status!~"4.."}}{span})))', at)
    buckets = prometheus.query(
        f"sum by (le) (increase(scoring_prediction_bucket{{{select}}}{span}))", at)
    predictions = {float(b["metric"]["le"]): float(b["value"][1]) for b in buckets}
    return Track(requests_, errors, p99 if requests_ else math.nan, predictions)


def per_bucket(cumulative: dict[float, float], edges: list[float]) -> np.ndarray:
    """Counts per bucket of ``edges`` from Prometheus' cumulative ``le`` counts.

    An edge the histogram does not have (two versions whose prediction ranges,
    and so buckets, differ) takes the count of its nearest edge below: a
    cumulative count never falls back to 0.
    """
    known = sorted(cumulative)
    values, last, i = [], 0.0, 0
    for edge in edges:
        while i < len(known) and known[i] <= edge:
            last = cumulative[known[i]]
            i += 1
        values.append(last)
    return np.clip(np.diff(np.array(values), prepend=0.0), 0, None)


#: Added to each prediction bucket's count before the stability index (see
#: :func:`ml_service.stability.psi_of_counts`): a step may see few predictions.
SMOOTHING = 0.5


def psi_allowance(mine: np.ndarray, theirs: np.ndarray) -> float:
    """What the stability index of two samples of one distribution is on average:
    about (bins - 1) x (1/n1 + 1/n2). A step with few predictions gets that much
    more room, so sampling noise alone does not abort it."""
    bins = int(np.count_nonzero((mine + theirs) > 0))
    return float(max(bins - 1, 0) * (1 / mine.sum() + 1 / theirs.sum()))


def prediction_shift(mine: Track, theirs: Track) -> tuple[float, float]:
    """(stability index of ``mine``'s predictions against ``theirs``, the allowance
    for the samples' size); (nan, 0) when either saw no prediction."""
    edges = sorted(set(mine.predictions) | set(theirs.predictions))
    counts, reference = per_bucket(mine.predictions, edges), per_bucket(theirs.predictions, edges)
    if not (counts.sum() and reference.sum()):
        return math.nan, 0.0
    return (psi_of_counts(reference, counts, SMOOTHING), psi_allowance(counts, reference))


def p99_limit(base: float, ratio: float, slack: float) -> float:
    """The most a p99 may be beside ``base``: ``ratio`` times it, or ``slack`` s more."""
    return max(base * ratio, base + slack)

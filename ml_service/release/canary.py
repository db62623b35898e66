"""Canary promotion on Kubernetes: the new version takes traffic in steps, each
judged against the stable version by Prometheus, and is removed at the first
failed check.

Traffic is split by pods, with no service mesh: a second Deployment,
``scoring-canary``, runs the new version beside the stable ``scoring`` and
the stage's Service selects the pods of both. A step asking ``p`` percent
runs ``round(p * stable / (100 - p))`` canary pods (at least one) beside the
stable ones, so the share is what the pod counts allow: with 2 stable pods the
finest step is 1 of 3 pods (33%), with 9 it is 10%. kube-proxy picks a pod per
*connection*, so a client that keeps its connection stays with one version,
and a handful of clients can see more or less than the share.

Between steps the canary serves for ``MLOPS_CANARY_STEP_SECONDS``; then
Prometheus (``MLOPS_PROMETHEUS_URL``, scraping the pods with the labels
``namespace`` and ``track``: see ``infra/prometheus/``) is asked, over that
window, for each track's

- server error rate (5xx per /score request): the canary's may exceed the
  stable version's by ``MLOPS_CANARY_MAX_ERROR_RATE``;
- p99 latency of /score: at most ``MLOPS_CANARY_MAX_P99_RATIO`` times the
  stable version's, or ``MLOPS_CANARY_P99_SLACK`` seconds more;
- prediction distribution (the ``scoring_prediction`` histogram): a
  population stability index at most ``MLOPS_CANARY_MAX_PSI``;

and the canary must have answered ``MLOPS_CANARY_MIN_REQUESTS``. A failed
check removes the canary Deployment (its pods leave the Service at once and
tell kept connections to reconnect), so all traffic is back on the stable
version, and the promotion fails with the reason; the stable Deployment was
never touched and the registry's aliases are not changed. After the last
step, the stable Deployment is rolled to the new version (the rolling update
with its smoke tests and undo) and the canary removed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ml_service.errors import UsageError
from ml_service.release.analysis import Prometheus, Track, observe, p99_limit, prediction_shift
from ml_service.release.ports import CanaryAborted, ReleaseError
from ml_service.settings import Settings

logger = logging.getLogger(__name__)

CANARY = "scoring-canary"
TRACK_LABEL = "mlops-template.io/track"


class Cluster(Protocol):
    """What a canary promotion asks of the cluster (the Kubernetes target)."""

    def namespace(self, stage: str) -> str:
        """The stage's namespace."""

    def replicas(self, stage: str) -> int:
        """Pods the stage's stable Deployment asks for now."""

    def apply_canary(self, stage: str, version: int, image: str, pods: int) -> None:
        """Run ``pods`` pods of ``image`` as the canary; raise ReleaseError if not ready."""

    def delete_canary(self, stage: str) -> None:
        """Remove the canary Deployment (if any)."""

    def new_pods(self, stage: str, name: str) -> list[str]:
        """The pods of Deployment ``name``'s current ReplicaSet."""


def parse_steps(text: str) -> list[float]:
    """The canary's traffic shares: percents, increasing, each above 0 and below 100.

    Raises:
        UsageError: If ``text`` is not such a comma-separated list.
    """
    steps = []
    for part in (p.strip() for p in text.split(",")):
        try:
            steps.append(float(part.rstrip("%")))
        except ValueError:
            raise UsageError(f"MLOPS_CANARY_STEPS must be percents separated by commas (e.g. "
                             f"'10,50'), got {text!r}") from None
    if any(not 0 < s < 100 for s in steps) or steps != sorted(set(steps)):
        raise UsageError(f"MLOPS_CANARY_STEPS must increase, each share above 0 and below 100 "
                         f"(the last step, 100%, is the full rollout), got {text!r}")
    return steps


def canary_pods(percent: float, stable: int) -> int:
    """Canary pods beside ``stable`` stable ones for about ``percent`` of the traffic."""
    return max(1, round(percent * stable / (100 - percent)))


@dataclass
class Plan:
    """A canary promotion's steps and checks (the MLOPS_CANARY_* settings)."""

    steps: list[float]
    step_seconds: float
    prometheus_url: str
    min_requests: int
    max_error_rate: float
    max_p99_ratio: float
    p99_slack: float
    max_psi: float

    @classmethod
    def of(cls, settings: Settings) -> Plan | None:
        """The plan MLOPS_CANARY_STEPS asks for, or None (one rolling update).

        Raises:
            UsageError: If the steps are malformed, or no Prometheus is named.
        """
        if not settings.canary_steps.strip():
            return None
        steps = parse_steps(settings.canary_steps)
        if not settings.prometheus_url:
            raise UsageError("MLOPS_CANARY_STEPS needs MLOPS_PROMETHEUS_URL: the Prometheus that "
                             "scrapes the pods judges each step (make prometheus starts one on "
                             "this machine); nothing was deployed")
        return cls(steps, settings.canary_step_seconds, settings.prometheus_url.rstrip("/"),
                   settings.canary_min_requests, settings.canary_max_error_rate,
                   settings.canary_max_p99_ratio, settings.canary_p99_slack,
                   settings.canary_max_psi)


@dataclass
class Verdict:
    """A step's analysis: each track's figures and the failed checks."""

    canary: Track
    stable: Track
    psi: float
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def judge(plan: Plan, canary: Track, stable: Track) -> Verdict:
    """The verdict of a step from the two tracks' figures."""
    psi, allowance = prediction_shift(canary, stable)
    verdict = Verdict(canary, stable, psi)
    failures = verdict.failures
    if canary.requests < max(plan.min_requests, 1):
        failures.append(f"the canary answered {canary.requests:.0f} /score requests, fewer than "
                        f"{max(plan.min_requests, 1)} (MLOPS_CANARY_MIN_REQUESTS): not enough "
                        "traffic to judge it, or Prometheus does not scrape its pods")
        return verdict
    if canary.error_rate > stable.error_rate + plan.max_error_rate:
        failures.append(f"failed answers (not 2xx): {canary.error_rate:.1%} of the canary's "
                        f"requests against {stable.error_rate:.1%} of the stable version's (at "
                        f"most {plan.max_error_rate:.1%} more)")
    if not math.isnan(stable.p99):
        limit = p99_limit(stable.p99, plan.max_p99_ratio, plan.p99_slack)
        if canary.p99 > limit:
            failures.append(f"p99 latency: {canary.p99 * 1000:.0f} ms against the stable "
                            f"version's {stable.p99 * 1000:.0f} ms (at most "
                            f"{limit * 1000:.0f} ms)")
    if not math.isnan(psi) and psi > plan.max_psi + allowance:
        failures.append(f"predictions shifted: population stability index {psi:.2f} between "
                        f"the canary's predictions and the stable version's (at most "
                        f"{plan.max_psi:g}, plus {allowance:.2f} for the sample's size)")
    return verdict


class Report:
    """The canary's steps as Markdown, appended to ``path`` (a job summary) as they go."""

    def __init__(self, path: Path | None, version: int, before: int, namespace: str):
        self.path = path
        self._write(f"\n### Canary: version {version} against version {before} "
                    f"(namespace {namespace})\n\n"
                    "| step | traffic | /score requests (canary / stable) | failed answers | "
                    "p99 | prediction PSI | verdict |\n|---|---|---|---|---|---|---|\n")

    def step(self, number: int, share: str, verdict: Verdict) -> None:
        c, s = verdict.canary, verdict.stable

        def ms(value: float) -> str:
            return "-" if math.isnan(value) else f"{value * 1000:.0f} ms"

        psi = "-" if math.isnan(verdict.psi) else f"{verdict.psi:.3f}"
        self._write(f"| {number} | {share} | {c.requests:.0f} / {s.requests:.0f} | "
                    f"{c.error_rate:.1%} / {s.error_rate:.1%} | {ms(c.p99)} / {ms(s.p99)} | "
                    f"{psi} | {'pass' if verdict.passed else '**fail**'} |\n")

    def end(self, text: str) -> None:
        self._write(f"\n{text}\n")

    def _write(self, text: str) -> None:
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as summary:
                summary.write(text)


def run(target: Cluster, plan: Plan, stage: str, version: int, image: str,
        before: int, smoke: Callable[[str], None], full_rollout: Callable[[], Any],
        summary: Path | None = None, sleep: Callable[[float], None] = time.sleep) -> Any:
    """Promote ``image`` (``version``) through the plan's steps, then roll it out.

    ``smoke`` checks one pod by name; ``full_rollout`` is the rolling update of
    the stable Deployment (with its own smoke tests and undo). A SIGTERM (a
    cancelled job) during the steps aborts like a failed check.

    Raises:
        CanaryAborted: If a step's pods are not ready, fail their smoke test or
            fail the analysis; the canary is removed and the stable version
            serves all traffic. Also if the full rollout fails (its message
            says what state it left).
    """
    namespace = target.namespace(stage)
    prometheus = Prometheus(plan.prometheus_url)
    report = Report(summary, version, before, namespace)
    stable = target.replicas(stage)
    target.delete_canary(stage)  # one left by an interrupted promotion
    rolling = False
    with _sigterm_aborts():
        try:
            for number, percent in enumerate(plan.steps, 1):
                pods = canary_pods(percent, stable)
                share = (f"{percent:g}% asked: {pods} of {pods + stable} pods "
                         f"({pods / (pods + stable):.0%})")
                logger.info("%s: canary step %d, version %s on %s", stage, number, version,
                            share)
                target.apply_canary(stage, version, image, pods)
                for pod in target.new_pods(stage, CANARY):
                    smoke(pod)
                sleep(plan.step_seconds)
                at = time.time()
                verdict = judge(plan,
                                observe(prometheus, namespace, "canary", plan.step_seconds, at),
                                observe(prometheus, namespace, "stable", plan.step_seconds, at))
                report.step(number, share, verdict)
                if not verdict.passed:
                    raise CanaryAborted(f"canary step {number} ({share}) failed its analysis: "
                                        f"{'; '.join(verdict.failures)}")
            rolling = True
            result = full_rollout()
        except ReleaseError as exc:
            left = _remove(target, stage, namespace)
            where = (f"the canary was removed: all traffic is back on version {before}"
                     if not rolling else "the canary was removed")
            text = f"{exc}; {left or where}"
            report.end(f"**Aborted**: {text}. Alias 'production' unchanged.")
            raise CanaryAborted(text) from None
        except BaseException:
            _remove(target, stage, namespace)
            raise
    _remove(target, stage, namespace)
    report.end(f"**Promoted**: version {version} passed {len(plan.steps)} step(s) and was "
               f"rolled out to all {stable} pod(s).")
    return result


def _remove(target: Cluster, stage: str, namespace: str) -> str | None:
    """Delete the canary (one retry); what to tell the user if it could not be."""
    for attempt in (1, 2):
        try:
            target.delete_canary(stage)
            return None
        except ReleaseError as exc:
            if attempt == 2:
                return (f"REMOVING THE CANARY FAILED ({exc}): it may still take traffic; "
                        f"remove it with `kubectl -n {namespace} delete deployment {CANARY}`")
            time.sleep(2)
    return None


@contextlib.contextmanager
def _sigterm_aborts() -> Iterator[None]:
    """While the steps run, SIGTERM raises CanaryAborted (so the canary is removed)."""
    def abort(signum: int, frame: Any) -> None:
        raise CanaryAborted("the promotion was stopped (SIGTERM)")

    try:
        previous = signal.signal(signal.SIGTERM, abort)
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

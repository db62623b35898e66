"""Shadow releases on Kubernetes: a version that passed QA scores a copy of
production's live traffic, its answers discarded and compared.

``mlops shadow`` runs the version as the Deployment ``scoring-shadow`` (with
its own ClusterIP Service, which production's Service does not select) in
production's namespace, smoke-tests its pods, then writes the ConfigMap
``scoring-shadow`` that production's pods mount (``MLOPS_SHADOW_FILE``): from
the kubelet's next sync of each pod (within its sync period, a minute by
default) they copy every answered /score request, or ``MLOPS_SHADOW_FRACTION``
of them, to the shadow, off the response path
(:mod:`ml_service.serving.shadow`). The shadow's pods keep their scoring
log to themselves (never production's storage) and copy nothing on.

``mlops shadow-report`` asks Prometheus, over a window, how the two compare:
copies answered and failed, the share of rows within the tolerance
(agreement), quantiles of the difference, the population stability index
between the shadow's predictions and production's, each side's p99 latency
and server errors. The verdict, against the thresholds, is recorded on the
version (tags ``shadow.*``); ``MLOPS_REQUIRE_SHADOW=true`` makes ``mlops
promote`` refuse a version whose last shadow verdict did not pass.
``mlops shadow-stop`` removes the ConfigMap (the copies stop), the Service and
the Deployment.
"""

from __future__ import annotations

import html
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from ml_service.release.analysis import Prometheus, observe, p99_limit, prediction_shift
from ml_service.release.canary import TRACK_LABEL, Plan
from ml_service.release.kubernetes_target import CONTAINER, VERSION_ANNOTATION, KubernetesTarget
from ml_service.release.ports import ReleaseError, SmokeCheck

logger = logging.getLogger(__name__)

SHADOW = "scoring-shadow"
APP_LABEL = "app.kubernetes.io/name"
#: Where production's pods find the shadow (the base Deployment mounts it).
CONFIG_FILE = "target.json"
#: Settings the shadow's own pods must not have (set empty: that also overrides an
#: envFrom): it copies nothing on, and its scoring log never joins production's.
_NOT_IN_SHADOW = ("MLOPS_SHADOW_FILE", "MLOPS_SCORING_LOG_URI")
SCORING_LOG_VOLUME = "scoring-log"


def manifests(target: KubernetesTarget, version: int, image: str,
              replicas: int = 1) -> tuple[dict[str, Any], dict[str, Any]]:
    """The shadow's Deployment and Service, from production's rendered overlay."""
    deployment = next(d for d in yaml.safe_load_all(target.render("production", version, image))
                      if d and d.get("kind") == "Deployment")
    deployment["metadata"]["name"] = SHADOW
    deployment["metadata"].setdefault("labels", {})[APP_LABEL] = SHADOW
    deployment["spec"]["replicas"] = replicas
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selected in (deployment["spec"]["selector"]["matchLabels"], labels):
        selected[APP_LABEL] = SHADOW
        selected[TRACK_LABEL] = "shadow"
    pod = deployment["spec"]["template"]["spec"]
    for container in pod["containers"]:
        if container["name"] == CONTAINER:
            container["env"] = [*(e for e in container.get("env", [])
                                  if e["name"] not in _NOT_IN_SHADOW),
                                *({"name": name, "value": ""} for name in _NOT_IN_SHADOW)]
    # Its own scoring log on its own volume, whatever production's is (a claim).
    pod["volumes"] = [{"name": SCORING_LOG_VOLUME, "emptyDir": {"sizeLimit": "2Gi"}}
                      if v["name"] == SCORING_LOG_VOLUME else v for v in pod.get("volumes", [])]
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": SHADOW, "labels": {APP_LABEL: SHADOW}},
               "spec": {"type": "ClusterIP",
                        "selector": dict(deployment["spec"]["selector"]["matchLabels"]),
                        "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
    return deployment, service


def start(target: KubernetesTarget, version: int, image: str, smoke: SmokeCheck, key: str,
          fraction: float, tolerance: float) -> str:
    """Run ``image`` as the shadow, smoke-test it, point production at it; its URL.

    Raises:
        ReleaseError: If its pods are not ready or fail their smoke test (the
            shadow is then removed; production was never pointed at it).
    """
    deployment, service = manifests(target, version, image)
    stop(target)  # one shadow at a time
    target.kubectl("production", "apply", "-f", "-",
                   input=yaml.safe_dump_all([deployment, service]))
    deadline = target.settings.rollout_deadline
    try:
        target.kubectl("production", "rollout", "status", f"deployment/{SHADOW}",
                       f"--timeout={deadline:.0f}s", timeout=deadline + 30)
        for pod in target.new_pods("production", SHADOW):
            with target.port_forward("production", f"pod/{pod}") as url:
                smoke(url, key)
    except ReleaseError as exc:
        stop(target)
        raise ReleaseError(f"the shadow of version {version} did not start: {exc}; it was "
                           "removed, production never copied anything to it") from None
    address = target.kubectl("production", "get", "service", SHADOW, "-o",
                             "jsonpath={.spec.clusterIP}").strip()
    url = f"http://{address}"
    config = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": SHADOW, "labels": {APP_LABEL: SHADOW}},
              "data": {CONFIG_FILE: json.dumps({"url": url, "fraction": fraction,
                                                "version": version,
                                                "tolerance": tolerance})}}
    target.kubectl("production", "apply", "-f", "-", input=yaml.safe_dump(config))
    return url


def stop(target: KubernetesTarget) -> None:
    """Stop the copies (the ConfigMap first), then remove the shadow."""
    target.kubectl("production", "delete", "configmap,service,deployment", SHADOW,
                   "--ignore-not-found", "--wait=false")


def running_version(target: KubernetesTarget) -> int | None:
    """The version the shadow runs, or None."""
    deployment = target.deployment("production", SHADOW)
    if deployment is None:
        return None
    value = deployment["spec"]["template"]["metadata"].get("annotations", {}).get(
        VERSION_ANNOTATION)
    return int(value) if value else None


@dataclass
class Thresholds:
    """What a shadow must show to pass (MLOPS_SHADOW_* and the canary's checks)."""

    min_requests: int
    min_agreement: float
    plan: Plan


@dataclass
class Report:
    """How the shadow compared with production over a window."""

    version: int
    production_version: int | None
    window_seconds: float
    copies: dict[str, float]
    rows: dict[str, float]
    difference: dict[str, float]
    psi: float
    p99: dict[str, float]
    error_rate: dict[str, float]
    failures: list[str] = field(default_factory=list)
    psi_allowance: float = 0.0  # what sampling alone gives the index (analysis.psi_allowance)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def agreement(self) -> float:
        total = self.rows["agree"] + self.rows["disagree"]
        return self.rows["agree"] / total if total else math.nan

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "agreement": self.agreement, "passed": self.passed}

    def markdown(self) -> str:
        def ms(value: float) -> str:
            return "-" if math.isnan(value) else f"{value * 1000:.0f} ms"

        def number(value: float) -> str:
            return "-" if math.isnan(value) else f"{value:.3g}"

        verdict = "**passed**" if self.passed else "**flagged**"
        lines = [
            f"### Shadow: version {self.version} beside production's version "
            f"{self.production_version} ({verdict})", "",
            f"Over the last {self.window_seconds:.0f} s of live traffic:", "",
            "| | shadow | production |", "|---|---|---|",
            f"| copies answered / failed / dropped | {self.copies['answered']:.0f} / "
            f"{self.copies['failed']:.0f} / {self.copies['dropped']:.0f} | |",
            f"| rows within the tolerance (agreement) | {self.agreement:.1%} of "
            f"{self.rows['agree'] + self.rows['disagree']:.0f} | |",
            f"| difference p50 / p90 / p99 | {number(self.difference['p50'])} / "
            f"{number(self.difference['p90'])} / {number(self.difference['p99'])} | |",
            f"| prediction PSI (against production) | {number(self.psi)} | |",
            f"| p99 latency of /score | {ms(self.p99['shadow'])} | "
            f"{ms(self.p99['production'])} |",
            f"| server errors | {self.error_rate['shadow']:.1%} | "
            f"{self.error_rate['production']:.1%} |", ""]
        lines += [f"- {failure}" for failure in self.failures] or ["- every check passed"]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        rows = "".join(f"<li>{html.escape(f)}</li>" for f in self.failures) or (
            "<li>every check passed</li>")
        table = html.escape(self.markdown())
        return (f"<!doctype html><meta charset=utf-8><title>Shadow version {self.version}"
                f"</title><pre>{table}</pre><ul>{rows}</ul>\n")


def report(target: KubernetesTarget, version: int, thresholds: Thresholds, window: float,
           production_version: int | None) -> Report:
    """Ask Prometheus how the shadow compared with production over ``window`` seconds."""
    plan = thresholds.plan
    prometheus = Prometheus(plan.prometheus_url, "the shadow report")
    namespace = target.namespace("production")
    at = time.time()
    span = f"[{window:.0f}s]"
    stable = f'namespace="{namespace}",track!~"canary|shadow"'

    def total(expr: str) -> float:
        return prometheus.scalar(f"sum(increase({expr}{span}))", at)

    copies = {outcome: total(f'scoring_shadow_requests_total{{{stable},outcome="{outcome}"}}')
              for outcome in ("answered", "failed", "dropped")}
    rows = {"agree": total(f'scoring_shadow_rows_total{{{stable},agree="true"}}'),
            "disagree": total(f'scoring_shadow_rows_total{{{stable},agree="false"}}')}
    difference = {}
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        quantile = prometheus.query(f"histogram_quantile({q}, sum by (le) (increase("
                                    f"scoring_shadow_difference_bucket{{{stable}}}{span})))", at)
        difference[name] = float(quantile[0]["value"][1]) if quantile else math.nan
    shadow = observe(prometheus, namespace, "shadow", window, at)
    production = observe(prometheus, namespace, "stable", window, at)
    psi, allowance = prediction_shift(shadow, production)
    found = Report(version, production_version, window, copies, rows, difference, psi,
                   {"shadow": shadow.p99, "production": production.p99},
                   {"shadow": shadow.error_rate, "production": production.error_rate},
                   psi_allowance=allowance)
    _judge(found, thresholds)
    return found


def _judge(found: Report, thresholds: Thresholds) -> None:
    plan, failures = thresholds.plan, found.failures
    sent = found.copies["answered"] + found.copies["failed"]
    if found.copies["answered"] < max(thresholds.min_requests, 1):
        failures.append(f"the shadow answered {found.copies['answered']:.0f} copies, fewer than "
                        f"{max(thresholds.min_requests, 1)} (MLOPS_SHADOW_MIN_REQUESTS): not "
                        "enough traffic yet, or production's pods do not copy to it")
        return
    failed_share = found.copies["failed"] / sent if sent else 0.0
    if max(failed_share, found.error_rate["shadow"]) > (found.error_rate["production"]
                                                        + plan.max_error_rate):
        failures.append(f"errors: {max(failed_share, found.error_rate['shadow']):.1%} of the "
                        f"copies failed, against {found.error_rate['production']:.1%} of "
                        f"production's requests (at most {plan.max_error_rate:.1%} more)")
    if found.agreement < thresholds.min_agreement:
        failures.append(f"agreement: {found.agreement:.1%} of rows within the tolerance of "
                        f"production's prediction (at least {thresholds.min_agreement:.0%}, "
                        "MLOPS_SHADOW_MIN_AGREEMENT)")
    if not math.isnan(found.psi) and found.psi > plan.max_psi + found.psi_allowance:
        failures.append(f"predictions shifted: population stability index {found.psi:.2f} "
                        f"against production's (at most {plan.max_psi:g}, plus "
                        f"{found.psi_allowance:.2f} for the sample's size)")
    shadow_p99, production_p99 = found.p99["shadow"], found.p99["production"]
    if not (math.isnan(shadow_p99) or math.isnan(production_p99)):
        limit = p99_limit(production_p99, plan.max_p99_ratio, plan.p99_slack)
        if shadow_p99 > limit:
            failures.append(f"p99 latency: {shadow_p99 * 1000:.0f} ms against production's "
                            f"{production_p99 * 1000:.0f} ms (at most {limit * 1000:.0f} ms)")

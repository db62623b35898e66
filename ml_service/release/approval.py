"""Before the production job uses a secret: is production configured, and approved?

The production job of release.yml runs in the GitHub environment
``production``, whose required reviewers are the manual approval. Two things
GitHub does not refuse on its own, checked here first:

- **Nothing configured yet.** A fresh fork has no DEPLOY_TARGET: the job ends
  green with a notice that says what to set, and deploys nothing (a first push
  never ends in a red run).
- **No approval.** An environment without required reviewers lets every run
  deploy at once, and a job naming an environment that does not exist creates
  it without any. Private repositories on GitHub Free, Pro and Team cannot
  have required reviewers at all (and a repository made private keeps rules
  GitHub then ignores). An administrator may also bypass the rules. So the
  job refuses unless the environment has required reviewers **and** this run
  carries an approval of the environment by one of them, or the repository
  says it accepts deploying without (``ALLOW_UNREVIEWED_PRODUCTION=true``).

Reading an environment and a run's approvals needs ``actions: read`` (GitHub's
REST API reference, "Get an environment", "Get the review history for a
workflow run").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ml_service.errors import MlopsError, UsageError
from ml_service.github import api_get

TARGETS = ("docker", "kubernetes")


@dataclass(frozen=True)
class Verdict:
    """Whether the production job deploys, and the sentence that says why."""

    deploy: bool
    message: str
    warning: bool = False


def required_reviewers(environment: dict[str, Any] | None) -> list[str]:
    """Logins and team names of an environment's required reviewers (empty: none)."""
    names: list[str] = []
    for rule in (environment or {}).get("protection_rules") or []:
        if rule.get("type") != "required_reviewers":
            continue
        for reviewer in rule.get("reviewers") or []:
            who = reviewer.get("reviewer") or {}
            names.append(str(who.get("login") or who.get("slug") or who.get("name") or "?"))
    return names


def approvers(approvals: list[dict[str, Any]], name: str = "production") -> list[str]:
    """Who approved this run for environment ``name`` (the run's review history)."""
    return [str((approval.get("user") or {}).get("login", "?")) for approval in approvals
            if approval.get("state") == "approved"
            and any(e.get("name") == name for e in approval.get("environments") or [])]


def production_verdict(deploy_target: str, environment: dict[str, Any] | None,
                       allow_unreviewed: bool, name: str = "production",
                       approvals: list[dict[str, Any]] | None = None) -> Verdict:
    """Decide whether the production job may deploy.

    Args:
        deploy_target: The DEPLOY_TARGET variable ("" when unset).
        environment: The environment as the REST API returns it, None if absent.
        allow_unreviewed: ALLOW_UNREVIEWED_PRODUCTION=true.
        approvals: This run's review history (the REST API's ``approvals``).

    Raises:
        UsageError: If DEPLOY_TARGET names no known target.
        MlopsError: If the environment has no required reviewers and that is not allowed.
    """
    if not deploy_target:
        return Verdict(False, "production is not configured, so nothing was deployed: set the "
                       "repository variable DEPLOY_TARGET to kubernetes or docker, and its "
                       "secrets (docs/github-setup.md)")
    if deploy_target not in TARGETS:
        raise UsageError(f"DEPLOY_TARGET={deploy_target!r} is not one of {', '.join(TARGETS)}")
    reviewers = required_reviewers(environment)
    approved = approvers(approvals or [], name)
    if reviewers and approved:
        return Verdict(True, f"approved by {', '.join(approved)} (environment '{name}' "
                       f"requires a review by one of {', '.join(reviewers)}): deploying to "
                       f"{deploy_target}")
    if allow_unreviewed:
        lacks = "no approval of this run" if reviewers else "no required reviewers"
        return Verdict(True, f"environment '{name}' has {lacks}: deploying without a manual "
                       "approval, as ALLOW_UNREVIEWED_PRODUCTION=true allows", warning=True)
    if reviewers:
        raise MlopsError(
            f"this run has no approval of environment '{name}' by a reviewer (its rules name "
            f"{', '.join(reviewers)}, but an administrator bypassed them, or GitHub ignores "
            "them on this repository's plan): refusing; nothing was deployed")
    where = "has no required reviewers" if environment else "does not exist"
    raise MlopsError(
        f"environment '{name}' {where}, so this run would deploy with nobody's approval: "
        f"refusing. Add required reviewers (Settings > Environments > {name}), or set the "
        "repository variable ALLOW_UNREVIEWED_PRODUCTION=true where they cannot be had "
        "(private repositories on GitHub Free, Pro and Team); nothing was deployed")


def fetch_environment(api_url: str, repository: str, token: str,
                      name: str = "production") -> dict[str, Any] | None:
    """The environment ``name`` from the REST API; None when it does not exist.

    Raises:
        MlopsError: If the API refuses.
    """
    environment: dict[str, Any] | None = api_get(
        api_url, token, f"/repos/{repository}/environments/{name}", missing_ok=True)
    return environment


def fetch_approvals(api_url: str, repository: str, token: str,
                    run_id: str) -> list[dict[str, Any]]:
    """The review history of workflow run ``run_id`` (approvals and rejections).

    Raises:
        MlopsError: If the API refuses.
    """
    approvals: list[dict[str, Any]] = api_get(
        api_url, token, f"/repos/{repository}/actions/runs/{run_id}/approvals",
        missing_ok=True) or []
    return approvals

"""GitHub Actions glue: job summaries, step outputs, and the embedded store's artifact.

Workflows only call make targets; these are the pieces behind the targets that
talk to Actions (files named by ``$GITHUB_STEP_SUMMARY``/``$GITHUB_OUTPUT``) and
to the GitHub REST API (``$GITHUB_TOKEN``, ``$GITHUB_REPOSITORY``).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ml_service.errors import MlopsError

logger = logging.getLogger(__name__)

STORE_ARTIFACT = "mlflow-store"
COMMENT_MARKER = "<!-- mlops-pipeline-summary -->"


def summary_markdown(result: dict[str, Any]) -> str:
    """The candidate-vs-champion table and gate decision of a ``--json-out`` result."""
    champion = result.get("champion")
    version = result.get("champion_version")
    label = f"champion v{version}" if version else "champion"
    if result.get("dry_run"):
        verdict = "would register" if result.get("gate_passed") else "would not register"
        verdict = f"🔎 **{verdict}** (dry run: nothing logged or registered)"
    elif result.get("registered"):
        verdict = f"✅ **registered** as version {result['version']} (alias `champion`)"
        if result.get("forced"):
            verdict += " — forced"
    else:
        verdict = "➖ **not registered**"
    lines = [
        COMMENT_MARKER,
        "### Training pipeline",
        "",
        f"{verdict}: {result.get('reason', '')}",
        "",
        f"| metric | candidate | {label} |",
        "|---|---:|---:|",
    ]
    for metric, value in result.get("candidate", {}).items():
        theirs = f"{champion[metric]:.4f}" if champion else "—"
        lines.append(f"| {metric} | {value:.4f} | {theirs} |")
    lines += comparison_markdown(result, label)
    lines += ["", f"Dataset digest `{result.get('dataset_digest', '')[:16]}`"]
    if result.get("cached_steps"):
        lines.append(f" · reused from cache: {', '.join(result['cached_steps'])}")
    if result.get("run_id"):
        lines.append(f" · MLflow run `{result['run_id']}`")
    return "\n".join(lines) + "\n"


def comparison_markdown(result: dict[str, Any], label: str = "champion") -> list[str]:
    """The improvement's interval and the slice table of a ``--json-out`` result."""
    from ml_service.training.comparison import Improvement

    lines: list[str] = []
    metric = result.get("primary_metric", "")
    if result.get("improvement"):
        shown = Improvement.from_json(result["improvement"]).describe()
        lines += ["", f"**{metric} improvement over the {label}:** {shown}"]
    if result.get("slices"):
        lines += ["", f"| {metric} by slice | rows | candidate | {label} | change |",
                  "|---|---:|---:|---:|---:|"]
        for row in result["slices"]:
            theirs = "—" if row["champion"] is None else f"{row['champion']:.4f}"
            change = "—" if row["change"] is None else f"{row['change']:+.2%}"
            lines.append(f"| {row['slice']}={row['group']} | {row['rows']} | "
                         f"{row['candidate']:.4f} | {theirs} | {change} |")
    return lines


def notice(text: str) -> str:
    """``text`` as a GitHub Actions notice annotation inside Actions, else as it is."""
    if os.environ.get("GITHUB_ACTIONS") == "true":
        return f"::notice title=mlops::{text}"
    return text


def step_outputs(result: dict[str, Any]) -> str:
    """``key=value`` lines for ``$GITHUB_OUTPUT``: registered and version."""
    version = result.get("version")
    return (
        f"registered={'true' if result.get('registered') else 'false'}\n"
        f"version={version if version is not None else ''}\n"
    )


# Only these runs write the registry: a pull request (a fork's included) or a
# feature branch can upload an artifact of the same name, and restoring it
# would load its model in a job that holds production secrets.
TRUSTED_WORKFLOWS = ("retrain.yml", "release.yml")
TRUSTED_EVENTS = ("push", "schedule", "workflow_dispatch")


def restore_store(store_dir: Path, api_url: str, repository: str, token: str,
                  name: str = STORE_ARTIFACT) -> str:
    """Download the newest trusted, unexpired artifact ``name`` into ``store_dir``.

    Trusted means uploaded by a run of retrain.yml or release.yml of this
    repository, on its default branch, started by a push, the schedule or a
    manual dispatch: never a pull request's run, a fork's, or a branch's.
    Other artifacts of that name are ignored and named in the answer.

    Returns:
        A sentence saying what was restored (and what was ignored), or that
        there was nothing to restore.

    Raises:
        MlopsError: If the API refuses or the artifact is not a store.
    """
    import requests

    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}

    def get(path: str, **params: Any) -> Any:
        response = requests.get(f"{api_url}{path}", params=params, headers=headers, timeout=30)
        if response.status_code != 200:
            raise MlopsError(
                f"cannot read {path} of the GitHub API: HTTP {response.status_code} "
                "(the job needs `actions: read`)"
            )
        return response.json()

    repo = get(f"/repos/{repository}")
    listing = get(f"/repos/{repository}/actions/artifacts", name=name, per_page=100)
    artifacts = [a for a in listing.get("artifacts", []) if not a.get("expired")]
    ignored: list[str] = []
    for artifact in sorted(artifacts, key=lambda a: a["created_at"], reverse=True):
        why = _untrusted(artifact, repo, get)
        if why:
            ignored.append(f"artifact {artifact['id']} ({why})")
            logger.warning("ignoring artifact %s: %s", artifact["id"], why)
            continue
        _extract(artifact, store_dir, headers)
        run = artifact.get("workflow_run", {}).get("id", "?")
        restored = (f"restored the registry from artifact {artifact['id']} of run {run} "
                    f"({artifact['created_at']})")
        return restored + (f"; ignored untrusted {', '.join(ignored)}" if ignored else "")
    if ignored:
        return (f"no trusted '{name}' artifact (ignored {', '.join(ignored)}): "
                "starting with an empty registry")
    return f"no earlier '{name}' artifact: starting with an empty registry"


def _untrusted(artifact: dict[str, Any], repo: dict[str, Any],
               get: Callable[..., Any]) -> str | None:
    """Why ``artifact`` may not be restored, or None if its run is trusted."""
    summary = artifact.get("workflow_run") or {}
    branch = repo.get("default_branch")
    if {summary.get("repository_id"), summary.get("head_repository_id")} != {repo["id"]}:
        return "uploaded by a run of another repository"
    if summary.get("head_branch") != branch:
        return f"uploaded on branch {summary.get('head_branch')!r}, not {branch!r}"
    run = get(f"/repos/{repo['full_name']}/actions/runs/{summary['id']}")
    if run.get("event") not in TRUSTED_EVENTS:
        return f"uploaded by a {run.get('event')!r} run"
    if (run.get("head_repository") or {}).get("full_name") != repo["full_name"]:
        return "its run's code came from another repository"
    if run.get("head_branch") != branch:
        return f"its run was on branch {run.get('head_branch')!r}"
    # `path` is ".github/workflows/x.yml", sometimes with "owner/repo/" before
    # it and "@ref" after it.
    workflow = (run.get("path") or "").split("@")[0].rsplit("/", 1)[-1]
    if workflow not in TRUSTED_WORKFLOWS:
        return f"uploaded by workflow {workflow or '?'}, not {' or '.join(TRUSTED_WORKFLOWS)}"
    return None


def _extract(artifact: dict[str, Any], store_dir: Path, headers: dict[str, str]) -> None:
    import requests

    archive = requests.get(artifact["archive_download_url"], headers=headers, timeout=300)
    if archive.status_code != 200:
        raise MlopsError(f"cannot download artifact {artifact['id']}: HTTP {archive.status_code}")
    with zipfile.ZipFile(io.BytesIO(archive.content)) as bundle:
        if "mlflow.db" not in bundle.namelist():
            raise MlopsError(f"artifact {artifact['id']} has no mlflow.db: not an MLflow store")
        if store_dir.exists():
            shutil.rmtree(store_dir)
        store_dir.mkdir(parents=True)
        bundle.extractall(store_dir)


def github_env() -> tuple[str, str, str]:
    """(API URL, repository, token) from the Actions environment.

    Raises:
        MlopsError: If the job does not provide them.
    """
    repository = os.environ.get("GITHUB_REPOSITORY")
    token = os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN")
    if not repository or not token:
        raise MlopsError(
            "GITHUB_REPOSITORY and GITHUB_TOKEN must be set (they are in GitHub Actions "
            "when the step passes `GITHUB_TOKEN: ${{ github.token }}`)"
        )
    return os.environ.get("GITHUB_API_URL", "https://api.github.com"), repository, token


def read_result(path: Path) -> dict[str, Any]:
    """Load a ``--json-out`` result file.

    Raises:
        MlopsError: If it is missing (the pipeline did not get that far).
    """
    try:
        result: dict[str, Any] = json.loads(path.read_text())
        return result
    except FileNotFoundError:
        raise MlopsError(f"{path} not found: run `make pipeline` first") from None

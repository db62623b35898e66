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
from pathlib import Path

from ml_service.errors import MlopsError

logger = logging.getLogger(__name__)

STORE_ARTIFACT = "mlflow-store"
COMMENT_MARKER = "<!-- mlops-pipeline-summary -->"


def summary_markdown(result: dict) -> str:
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
    lines += ["", f"Dataset digest `{result.get('dataset_digest', '')[:16]}`"]
    if result.get("cached_steps"):
        lines.append(f" · reused from cache: {', '.join(result['cached_steps'])}")
    if result.get("run_id"):
        lines.append(f" · MLflow run `{result['run_id']}`")
    return "\n".join(lines) + "\n"


def step_outputs(result: dict) -> str:
    """``key=value`` lines for ``$GITHUB_OUTPUT``: registered and version."""
    version = result.get("version")
    return (
        f"registered={'true' if result.get('registered') else 'false'}\n"
        f"version={version if version is not None else ''}\n"
    )


def restore_store(store_dir: Path, api_url: str, repository: str, token: str,
                  name: str = STORE_ARTIFACT) -> str:
    """Download the newest unexpired artifact ``name`` into ``store_dir``.

    Returns:
        A sentence saying what was restored, or that there was nothing to restore.

    Raises:
        MlopsError: If the API refuses or the artifact is not a store.
    """
    import requests

    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}
    listing = requests.get(
        f"{api_url}/repos/{repository}/actions/artifacts",
        params={"name": name, "per_page": 100}, headers=headers, timeout=30,
    )
    if listing.status_code != 200:
        raise MlopsError(
            f"cannot list artifacts of {repository}: HTTP {listing.status_code} "
            "(the job needs `actions: read`)"
        )
    artifacts = [a for a in listing.json().get("artifacts", []) if not a.get("expired")]
    if not artifacts:
        return f"no earlier '{name}' artifact: starting with an empty registry"
    newest = max(artifacts, key=lambda a: a["created_at"])
    archive = requests.get(newest["archive_download_url"], headers=headers, timeout=300)
    if archive.status_code != 200:
        raise MlopsError(f"cannot download artifact {newest['id']}: HTTP {archive.status_code}")
    with zipfile.ZipFile(io.BytesIO(archive.content)) as bundle:
        if "mlflow.db" not in bundle.namelist():
            raise MlopsError(f"artifact {newest['id']} has no mlflow.db: not an MLflow store")
        if store_dir.exists():
            shutil.rmtree(store_dir)
        store_dir.mkdir(parents=True)
        bundle.extractall(store_dir)
    run = newest.get("workflow_run", {}).get("id", "?")
    return (
        f"restored the registry from artifact {newest['id']} of run {run} "
        f"({newest['created_at']})"
    )


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


def read_result(path: Path) -> dict:
    """Load a ``--json-out`` result file.

    Raises:
        MlopsError: If it is missing (the pipeline did not get that far).
    """
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise MlopsError(f"{path} not found: run `make pipeline` first") from None

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
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
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


def notice(text: str, level: str = "notice") -> str:
    """``text`` as a GitHub Actions annotation (``notice``/``warning``) inside Actions."""
    if os.environ.get("GITHUB_ACTIONS") == "true":
        return f"::{level} title=mlops::{text}"
    return text


def api_get(api_url: str, token: str, path: str, missing_ok: bool = False,
            **params: Any) -> Any:
    """The JSON answer of a GET of the GitHub REST API.

    Args:
        missing_ok: Answer None for a 404 instead of failing.

    Raises:
        MlopsError: If the API refuses (the job lacks ``actions: read``, or
            ``contents: read`` for branches and compare).
    """
    import requests

    response = requests.get(f"{api_url}{path}", params=params, timeout=30, headers={
        "Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"})
    if missing_ok and response.status_code == 404:
        return None
    if response.status_code != 200:
        raise MlopsError(f"cannot read {path} of the GitHub API: HTTP {response.status_code} "
                         "(the job needs `actions: read`)")
    return response.json()


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
# GitHub cancels a workflow run that has not finished after 35 days (its
# workflow-run time limit), so a run created more than 35 days before an
# artifact cannot upload a newer one: older runs need not be looked at.
RUN_LIFETIME = timedelta(days=35)
MAX_PAGES = 50  # of 100 runs or artifacts: far more than 90 days of retrains


def restore_store(store_dir: Path, api_url: str, repository: str, token: str,
                  name: str = STORE_ARTIFACT) -> str:
    """Download the newest trusted, unexpired artifact ``name`` into ``store_dir``.

    Trusted means uploaded by a run of retrain.yml or release.yml of this
    repository, started by a push, the schedule or a manual dispatch, on the
    default branch: its branch filter and ``head_branch`` name it, and its
    commit is on that branch (a tag of the same name is not). The store is
    looked for through those workflows' runs on the branch, newest first, at
    most MAX_PAGES pages of 100 runs each (a run still waiting for the
    production approval included: it has uploaded the newest store). Older
    runs are looked at until one was created RUN_LIFETIME before the best
    artifact found, since an older run can upload later.

    Returns:
        A sentence saying what was restored (and which runs were skipped), or
        that there is no store at all: then the registry starts empty.

    Raises:
        MlopsError: If the API refuses, the artifact is not a store, or
            stores exist but none from a trusted run (starting empty would
            register a new first model and save it as the trusted store).
    """
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}

    def get(path: str, **params: Any) -> Any:
        return api_get(api_url, token, path, **params)

    repo = get(f"/repos/{repository}")
    branch = repo["default_branch"]
    # The branch's head commit, unlike a run's head_branch (the same for a tag
    # named like the branch), is not ambiguous.
    branch_head = get(f"/repos/{repository}/branches/{branch}")["commit"]["sha"]
    skipped: dict[int, str] = {}  # untrusted run id: why
    best: tuple[dict[str, Any], dict[str, Any]] | None = None  # (artifact, its run)
    for workflow in TRUSTED_WORKFLOWS:
        runs = f"/repos/{repository}/actions/workflows/{workflow}/runs"
        for run in _pages(get, runs, "workflow_runs", branch=branch):
            if best and _time(run["created_at"]) < _time(best[0]["created_at"]) - RUN_LIFETIME:
                break
            why = _untrusted(run, repo)
            if why:
                skipped[run["id"]] = why
                continue
            artifact = _newest_store(get, repository, run["id"], name)
            if not artifact or (best and artifact["created_at"] <= best[0]["created_at"]):
                continue
            compare = get(f"/repos/{repository}/compare/{branch_head}...{run['head_sha']}")
            if compare.get("status") not in ("identical", "behind"):  # not an ancestor
                skipped[run["id"]] = (f"its commit {run['head_sha'][:12]} is not on branch "
                                      f"{branch!r} (a tag named {branch!r}?)")
                continue
            best = artifact, run
    if best:
        artifact, run = best
        _extract(artifact, store_dir, headers)
        restored = (f"restored the registry from artifact {artifact['id']} of run {run['id']} "
                    f"({artifact['created_at']})")
        if skipped:
            runs_skipped = [f"run {run_id}: {why}" for run_id, why in skipped.items()]
            restored += (f"; skipped {len(skipped)} untrusted run(s) "
                         f"({_few(runs_skipped)})")
        return restored

    listing = _pages(get, f"/repos/{repository}/actions/artifacts", "artifacts", name=name)
    stores = [a for a in listing if not a.get("expired")]
    if not stores:
        return f"no earlier '{name}' artifact: starting with an empty registry"

    def why_not(artifact: dict[str, Any]) -> str:
        run_id: int = (artifact.get("workflow_run") or {}).get("id", 0)
        if run_id not in skipped:
            run = get(f"/repos/{repository}/actions/runs/{run_id}") if run_id else {}
            skipped[run_id] = _untrusted(run, repo) or (
                f"not among the newest runs of {' or '.join(TRUSTED_WORKFLOWS)} on {branch!r}")
        return f"artifact {artifact['id']} (run {run_id}): {skipped[run_id]}"

    raise MlopsError(
        f"found {len(stores)} '{name}' artifact(s) but none from a trusted run "
        f"({' or '.join(TRUSTED_WORKFLOWS)} on branch {branch!r}, started by "
        f"{', '.join(TRUSTED_EVENTS)}): {_few([why_not(a) for a in stores[:3]], len(stores))}. "
        "Starting from an empty registry would register a new first model; to do that on "
        f"purpose, delete these artifacts (`gh api -X DELETE repos/{repository}/actions/"
        f"artifacts/ID`) and run the retrain workflow on {branch!r} (`make trigger-retrain`, "
        "a workflow_dispatch)"
    )


def _pages(get: Callable[..., Any], path: str, key: str,
           **params: Any) -> Iterator[dict[str, Any]]:
    """The items ``key`` of the listing ``path``, page after page, at most MAX_PAGES."""
    for page in range(1, MAX_PAGES + 1):
        answer = get(path, per_page=100, page=page, **params)
        items = answer.get(key) if isinstance(answer, dict) else None
        if not isinstance(items, list):  # never read an odd answer as "nothing there"
            raise MlopsError(f"the GitHub API's answer to {path} has no '{key}' list")
        yield from items
        if len(items) < 100:
            return


def _few(reasons: list[str], total: int | None = None) -> str:
    """The first three of ``reasons`` (of ``total``), "; "-separated."""
    more = (total or len(reasons)) - 3
    return "; ".join(reasons[:3]) + (f"; and {more} more" if more > 0 else "")


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def _untrusted(run: dict[str, Any], repo: dict[str, Any]) -> str | None:
    """Why ``run`` may not write the registry, or None if it passes the cheap checks.

    Whether its commit is on the default branch is checked apart (an API call).
    """
    branch = repo["default_branch"]
    head = run.get("head_repository") or {}
    ids = {(run.get("repository") or {}).get("id") or repo["id"], head.get("id") or repo["id"]}
    # `path` is ".github/workflows/x.yml", sometimes with "owner/repo/" before
    # it and "@ref" after it.
    workflow = (run.get("path") or "").split("@")[0].rsplit("/", 1)[-1]
    if run.get("event") not in TRUSTED_EVENTS:
        return f"a {run.get('event')!r} run"
    if head.get("full_name") != repo["full_name"] or ids != {repo["id"]}:
        return f"a run of another repository's code ({head.get('full_name')!r})"
    if run.get("head_branch") != branch:
        return f"a run on branch {run.get('head_branch')!r}, not {branch!r}"
    if workflow not in TRUSTED_WORKFLOWS:
        return f"a run of {workflow or '?'}, not {' or '.join(TRUSTED_WORKFLOWS)}"
    return None


def _newest_store(get: Callable[..., Any], repository: str, run_id: int,
                  name: str) -> dict[str, Any] | None:
    """The newest unexpired artifact ``name`` of run ``run_id``, if any."""
    listing = get(f"/repos/{repository}/actions/runs/{run_id}/artifacts", name=name,
                  per_page=100)
    stores = [a for a in listing.get("artifacts", []) if not a.get("expired")]
    return max(stores, key=lambda a: str(a["created_at"]), default=None)


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
    relocate_store(store_dir)


#: Columns of MLflow's SQLite schema that hold absolute artifact locations.
LOCATION_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                    ("logged_models", "artifact_location"),
                    ("model_versions", "storage_location"), ("model_versions", "source"))


def relocate_store(store_dir: Path) -> str | None:
    """Point an embedded store's artifact locations at ``store_dir``, where it now is.

    MLflow records each run's and model's artifact location as an absolute
    ``file://`` URI. A store moved to another path (another job's workspace,
    a runner with another work folder, a downloaded artifact) would find none
    of its models; the locations under the old ``<store>/artifacts`` are
    rewritten to this one's. Returns the old location, or None if nothing moved.
    """
    import sqlite3

    new = (store_dir / "artifacts").resolve().as_uri()
    with sqlite3.connect(store_dir / "mlflow.db") as db:
        rows = db.execute("SELECT artifact_location FROM experiments "
                          "WHERE artifact_location LIKE 'file://%/artifacts'").fetchall()
        locations = [str(r[0]) for r in rows]
        old = max(set(locations) or {new}, key=locations.count)
        if old == new:
            return None
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, column in LOCATION_COLUMNS:
            if table in tables:
                # A plain prefix comparison: LIKE would read % and _ in a path as wildcards.
                db.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) "  # noqa: S608
                           f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                           (new, len(old) + 1, old, len(old) + 1, old + "/"))
    logger.info("moved the store's artifact locations from %s to %s", old, new)
    return old


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

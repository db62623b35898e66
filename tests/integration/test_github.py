"""The make targets behind the GitHub Actions workflows, against local stand-ins.

`store-restore` talks to a fake GitHub REST API on a loopback port; `keepalive`
runs a recording `gh` placed first on PATH.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import re
import subprocess
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.conftest import REPO, isolated_env


def make(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-C", str(REPO), *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def isolated(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path)


def test_summary_writes_the_job_summary_and_step_outputs(isolated, tmp_path):
    assert make("pipeline", env=isolated).returncode == 0
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs.txt"
    result = make("summary", f"SUMMARY_OUT={summary}", f"OUTPUTS_OUT={outputs}", env=isolated)
    assert result.returncode == 0, result.stderr
    text = summary.read_text()
    assert "<!-- mlops-pipeline-summary -->" in text
    assert "registered** as version 1" in text and "| rmse |" in text
    assert "| rmse by slice | rows | candidate | champion | change |" in text
    assert "| sex=1 | 42 |" in text and "| age=>=60 | 21 |" in text
    assert outputs.read_text() == "registered=true\nversion=1\n"
    assert (tmp_path / "reports" / "pipeline.md").read_text() == text


def test_card_appends_the_model_card_to_the_job_summary(isolated, tmp_path):
    assert make("pipeline", env=isolated).returncode == 0
    summary = tmp_path / "summary.md"
    result = make("card", f"SUMMARY_OUT={summary}", env=isolated)
    assert result.returncode == 0, result.stderr
    text = summary.read_text()
    assert text.startswith("## Model card: diabetes-ridge version 1")
    assert "no champion to compare with" in text and text.strip() in result.stdout


def test_a_dry_run_summary_says_what_would_happen_and_registers_nothing(isolated, tmp_path):
    result = make("pipeline", "ARGS=--dry-run", env=isolated)
    assert result.returncode == 0, result.stderr
    outputs = tmp_path / "outputs.txt"
    assert make("summary", f"OUTPUTS_OUT={outputs}", env=isolated).returncode == 0
    assert outputs.read_text() == "registered=false\nversion=\n"
    assert "would register** (dry run" in (tmp_path / "reports" / "pipeline.md").read_text()
    assert "no versions" in make("status", env=isolated).stdout


def test_summary_without_a_pipeline_result_is_a_clear_error(isolated):
    result = make("summary", env=isolated)
    assert result.returncode != 0
    assert "pipeline.json not found: run `make pipeline` first" in result.stderr


REPO_ID = 42
MAIN_COMMITS = ("c1", "c2", "c3")  # the default branch's history, oldest first
TRUSTED_RUN = {"event": "schedule", "path": ".github/workflows/retrain.yml",
               "head_branch": "main", "head_sha": "c2",
               "head_repository": {"id": REPO_ID, "full_name": "owner/repo"},
               "repository": {"id": REPO_ID, "full_name": "owner/repo"}}


def run(store: int, created_at: str, blob: bytes = b"", uploaded: str = "",
        expired: bool = False, **fields) -> dict:
    """Workflow run 1000 + ``store`` (TRUSTED_RUN unless ``fields`` say otherwise) that
    uploaded artifact ``store`` holding ``blob`` at ``uploaded`` (default: its start)."""
    return {"id": 1000 + store, **TRUSTED_RUN, **fields, "created_at": created_at,
            "artifacts": [{"id": store, "created_at": uploaded or created_at,
                           "expired": expired, "blob": blob}]}


class FakeGitHub:
    """GitHub's REST API for owner/repo from memory: its default branch main (whose
    commits are MAIN_COMMITS), workflow runs, their artifacts and the artifact zips.

    Listings are newest first and paged by ``page``/``per_page`` as GitHub pages them;
    a workflow's runs are filtered by ``branch`` (their head_branch), artifacts by name.
    """

    def __init__(self, runs: list[dict], status: int = 200):
        self.runs = sorted(runs, key=lambda r: r["created_at"], reverse=True)
        self.requests: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                fake.requests.append((self.path, self.headers.get("Authorization", "")))
                url = urlsplit(self.path)
                code, body = (status, {"message": "Resource not accessible"}) if status != 200 \
                    else fake.answer(url.path, dict(parse_qsl(url.query)))
                body = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def artifacts(self, query: dict, run_id: int | None = None) -> list[dict]:
        """The artifacts named ``query["name"]`` (of run ``run_id``), newest first."""
        listed = [
            {"id": a["id"], "name": "mlflow-store", "created_at": a["created_at"],
             "expired": a["expired"], "archive_download_url": f"{self.url}/zip/{a['id']}",
             "workflow_run": {"id": r["id"], "repository_id": r["repository"]["id"],
                              "head_repository_id": r["head_repository"]["id"],
                              "head_branch": r["head_branch"], "head_sha": r["head_sha"]}}
            for r in self.runs for a in r["artifacts"] if run_id in (None, r["id"])]
        return sorted([a for a in listed if query.get("name", a["name"]) == a["name"]],
                      key=lambda a: a["created_at"], reverse=True)

    def answer(self, path: str, query: dict) -> tuple[int, dict | bytes]:
        repo, page, size = "/repos/owner/repo", int(query.get("page", 1)), \
            int(query.get("per_page", 30))

        def paged(key: str, items: list) -> tuple[int, dict]:
            return 200, {"total_count": len(items), key: items[(page - 1) * size:page * size]}

        runs = [{k: v for k, v in r.items() if k != "artifacts"} for r in self.runs]
        if path == repo:
            return 200, {"id": REPO_ID, "full_name": "owner/repo", "default_branch": "main"}
        if path == f"{repo}/branches/main":
            return 200, {"name": "main", "commit": {"sha": MAIN_COMMITS[-1]}}
        if match := re.fullmatch(rf"{repo}/compare/(\w+)\.\.\.(\w+)", path):
            base, head = match.groups()
            return 200, {"status": "identical" if base == head else
                         "behind" if head in MAIN_COMMITS else "diverged"}
        if match := re.fullmatch(rf"{repo}/actions/workflows/([\w.-]+)/runs", path):
            return paged("workflow_runs", [
                r for r in runs if r["path"].split("@")[0].endswith(f"/{match[1]}")
                and query.get("branch", r["head_branch"]) == r["head_branch"]])
        if match := re.fullmatch(rf"{repo}/actions/runs/(\d+)", path):
            return 200, next(r for r in runs if r["id"] == int(match[1]))
        if match := re.fullmatch(rf"{repo}/actions/runs/(\d+)/artifacts", path):
            return paged("artifacts", self.artifacts(query, int(match[1])))
        if path == f"{repo}/actions/artifacts":
            return paged("artifacts", self.artifacts(query))
        if match := re.fullmatch(r"/zip/(\d+)", path):
            return 200, next(a["blob"] for r in self.runs for a in r["artifacts"]
                             if a["id"] == int(match[1]))
        return 404, {"message": "Not Found"}

    def downloaded(self) -> set[int]:
        return {int(p.rsplit("/", 1)[1]) for p, _ in self.requests if p.startswith("/zip/")}


def zipped(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in directory.rglob("*"):
            if path.is_file():
                archive.write(path, path.relative_to(directory))
    return buffer.getvalue()


def github_env(isolated: dict, fake: FakeGitHub) -> dict:
    return {**isolated, "GITHUB_API_URL": fake.url, "GITHUB_REPOSITORY": "owner/repo",
            "GITHUB_TOKEN": "t0ken"}


@pytest.fixture(scope="module")
def store_blob(tmp_path_factory) -> bytes:
    """A zipped embedded store holding a champion, as the retrain job uploads it."""
    root = tmp_path_factory.mktemp("store")
    assert make("pipeline", env=isolated_env(root)).returncode == 0
    blob = zipped(root / ".mlflow")
    # Gone, like the uploading job's workspace: the restored store must find its
    # artifacts where it is restored, not where it was made.
    shutil.rmtree(root / ".mlflow")
    return blob


def test_store_restore_brings_back_the_newest_registry(isolated, store_blob):
    # The newest unexpired artifact wins (here release.yml's, named as a called
    # workflow's path is); an expired newer one is skipped.
    fake = FakeGitHub([
        run(3, "2026-01-01T00:00:00Z", b"older"),
        run(7, "2026-02-01T00:00:00Z", store_blob, event="workflow_dispatch",
            path="owner/repo/.github/workflows/release.yml@refs/heads/main"),
        run(9, "2026-03-01T00:00:00Z", expired=True),
    ])

    result = make("store-restore", env=github_env(isolated, fake))
    assert result.returncode == 0, result.stderr
    assert "restored the registry from artifact 7 of run 1007" in result.stdout
    assert all(auth == "Bearer t0ken" for _, auth in fake.requests)
    assert fake.downloaded() == {7}
    status = make("status", env=isolated)
    assert "champion" in status.stdout
    # Its artifacts are read from where it now is (MLflow records absolute paths).
    card = make("card", "VERSION=1", env=isolated)
    assert card.returncode == 0 and "## Model card: diabetes-ridge version 1" in card.stdout, (
        card.stderr)
    fake.server.shutdown()


POISONED = [
    # a pull request's run (a fork's or the repository's own) uploading the name
    {"event": "pull_request"},
    {"event": "pull_request_target"},
    # a fork's code: by its head repository's id, or by its name
    {"head_repository": {"id": 666, "full_name": "owner/repo"}},
    {"head_repository": {"id": REPO_ID, "full_name": "mallory/repo"}},
    # a dispatch or push on a feature branch (not listed for branch main)
    {"event": "workflow_dispatch", "head_branch": "feature"},
    {"event": "push", "head_branch": "feature", "head_sha": "f1"},
    # the default branch, but a workflow that never writes the registry
    {"event": "push", "path": ".github/workflows/build.yml"},
]


@pytest.mark.parametrize("poison", POISONED, ids=lambda p: json.dumps(p)[:60])
def test_store_restore_ignores_an_artifact_from_an_untrusted_run(isolated, store_blob, poison):
    """A newer mlflow-store uploaded by a PR, a fork, a branch or another workflow is
    never restored: the older artifact of the trusted retrain run is."""
    fake = FakeGitHub([run(3, "2026-01-01T00:00:00Z", store_blob),
                       run(8, "2026-02-01T00:00:00Z", b"poisoned: never downloaded", **poison)])
    result = make("store-restore", env=github_env(isolated, fake))
    assert result.returncode == 0, result.stderr
    assert "restored the registry from artifact 3 of run 1003" in result.stdout
    assert fake.downloaded() == {3}
    fake.server.shutdown()


@pytest.mark.parametrize("workflow", ["build.yml", "retrain.yml"])
def test_store_restore_finds_the_trusted_store_behind_many_untrusted_ones(
        isolated, store_blob, workflow):
    """150 newer pull-request uploads (more than a page) do not hide the trusted store."""
    fork = {"event": "pull_request", "path": f".github/workflows/{workflow}",
            "head_repository": {"id": 666, "full_name": "mallory/repo"}}
    fake = FakeGitHub([run(3, "2026-01-01T00:00:00Z", store_blob)] + [
        run(100 + n, f"2026-02-01T{n // 60:02}:{n % 60:02}:00Z", b"poisoned", **fork)
        for n in range(150)])
    result = make("store-restore", env=github_env(isolated, fake))
    assert result.returncode == 0, result.stderr
    assert "restored the registry from artifact 3 of run 1003" in result.stdout
    assert fake.downloaded() == {3}
    if workflow == "retrain.yml":  # listed with the trusted runs, skipped one by one
        assert "skipped 150 untrusted run(s) (run 1249: a 'pull_request' run;" in result.stdout
    fake.server.shutdown()


# A run of retrain.yml for a tag named main (`git push origin HEAD:refs/tags/main`):
# its head_branch says "main", but its commit is not on the branch.
TAG_RUN = {"event": "push", "head_sha": "t1"}


def test_store_restore_skips_a_run_for_a_tag_named_like_the_branch(isolated, store_blob):
    fake = FakeGitHub([run(3, "2026-01-01T00:00:00Z", store_blob),
                       run(5, "2026-02-01T00:00:00Z", b"from the tag", **TAG_RUN)])
    result = make("store-restore", env=github_env(isolated, fake))
    assert result.returncode == 0, result.stderr
    assert "restored the registry from artifact 3 of run 1003" in result.stdout
    assert ("skipped 1 untrusted run(s) (run 1005: its commit t1 is not on branch 'main' "
            "(a tag named 'main'?))") in result.stdout
    assert fake.downloaded() == {3}
    fake.server.shutdown()


def test_store_restore_refuses_a_store_from_a_tag_run_only(isolated):
    fake = FakeGitHub([run(5, "2026-02-01T00:00:00Z", b"from the tag", **TAG_RUN)])
    result = make("store-restore", env=github_env(isolated, fake))
    assert result.returncode != 0
    assert "found 1 'mlflow-store' artifact(s) but none from a trusted run" in result.stderr
    assert ("artifact 5 (run 1005): its commit t1 is not on branch 'main' "
            "(a tag named 'main'?)") in result.stderr
    assert fake.downloaded() == set()
    assert not Path(isolated["MLOPS_STORE_DIR"]).exists()
    fake.server.shutdown()


def test_store_restore_with_only_untrusted_artifacts_fails(isolated):
    """Starting empty would register a "first model" and upload it as the trusted store."""
    fake = FakeGitHub([run(8 + n, f"2026-02-0{n + 1}T00:00:00Z", b"poisoned",
                           event="pull_request", path=".github/workflows/build.yml")
                       for n in range(5)])
    result = make("store-restore", env=github_env(isolated, fake))
    assert result.returncode != 0
    assert "found 5 'mlflow-store' artifact(s) but none from a trusted run" in result.stderr
    assert "artifact 12 (run 1012): a 'pull_request' run; artifact 11" in result.stderr
    assert "; and 2 more" in result.stderr and "`make trigger-retrain`" in result.stderr
    assert "delete these artifacts (`gh api -X DELETE repos/owner/repo/actions/" in result.stderr
    assert fake.downloaded() == set()
    assert not Path(isolated["MLOPS_STORE_DIR"]).exists()
    fake.server.shutdown()


@pytest.mark.parametrize("runs", [[], [run(3, "2026-01-01T00:00:00Z", expired=True),
                                       run(8, "2026-02-01T00:00:00Z", expired=True,
                                           event="pull_request")]],
                         ids=["none", "expired"])
def test_store_restore_without_an_artifact_starts_empty(isolated, runs):
    fake = FakeGitHub(runs)
    result = make("store-restore", env=github_env(isolated, fake))
    assert result.returncode == 0, result.stderr
    assert "no earlier 'mlflow-store' artifact: starting with an empty registry" in result.stdout
    fake.server.shutdown()


def test_store_restore_takes_a_later_upload_of_an_older_run(isolated, store_blob):
    """A run that waited for an approval uploads after a newer run: the newest upload
    wins, and a run started more than 35 days before it (GitHub cancels runs at 35 days)
    is not looked at."""
    fake = FakeGitHub([
        run(4, "2026-03-01T00:00:00Z", b"an older upload", uploaded="2026-03-01T01:00:00Z"),
        run(3, "2026-02-19T00:00:00Z", store_blob, uploaded="2026-03-05T00:00:00Z"),
        run(2, "2026-01-24T00:00:00Z", b"never looked at"),
    ])
    result = make("store-restore", env=github_env(isolated, fake))
    assert result.returncode == 0, result.stderr
    assert "restored the registry from artifact 3 of run 1003" in result.stdout
    assert fake.downloaded() == {3}
    assert not any("/runs/1002/" in path for path, _ in fake.requests)
    fake.server.shutdown()


def test_store_restore_reports_a_refused_api_call(isolated):
    fake = FakeGitHub([], status=403)
    result = make("store-restore", env=github_env(isolated, fake))
    assert result.returncode != 0
    assert "HTTP 403 (the job needs `actions: read`)" in result.stderr
    fake.server.shutdown()


def test_store_restore_does_nothing_with_a_tracking_server(isolated):
    env = {**isolated, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    result = make("store-restore", env=env)
    assert result.returncode == 0 and "nothing to restore" in result.stdout


def fake_gh(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A `gh` first on PATH that records its arguments; returns (env, record file)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    (bin_dir / "gh").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "gh").chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "GITHUB_REPOSITORY": "owner/repo"}, calls


@pytest.fixture
def api(tmp_path):
    """The GitHub API stand-in `make act` uses (infra/act/github_api.py), on a loopback port."""
    from infra.act.github_api import State, serve

    state = State(tmp_path / "api", "owner/repo", REPO, "main")
    server = serve(state)
    env = {"GITHUB_API_URL": f"http://127.0.0.1:{server.server_address[1]}",
           "GITHUB_REPOSITORY": "owner/repo", "GH_TOKEN": "t0ken", "GITHUB_TOKEN": "t0ken"}
    yield state, env
    server.shutdown()


def test_keepalive_re_enables_every_scheduled_workflow(api):
    state, env = api
    result = make("keepalive", env=env)
    assert result.returncode == 0, result.stderr
    assert [(c["call"], c["workflow"], c["authorization"]) for c in state.read(
        "calls.json", [])] == [("enable", "monitor.yml", "Bearer"),
                               ("enable", "retrain.yml", "Bearer")]
    assert "enabled monitor.yml (was active)" in result.stdout
    # A workflow someone switched off by hand stays off.
    state.write("workflows.json", {"monitor.yml": "disabled_manually"})
    result = make("keepalive", env=env)
    assert result.returncode == 0, result.stderr
    assert "left monitor.yml off: someone disabled it by hand" in result.stdout
    assert [c["workflow"] for c in state.read("calls.json", [])][2:] == ["retrain.yml"]
    result = make("keepalive", env={**env, "GITHUB_REPOSITORY": ""})
    assert result.returncode != 0 and "set GITHUB_REPOSITORY" in result.stderr
    result = make("keepalive", env={**env, "GH_TOKEN": ""})
    assert result.returncode != 0 and "set GH_TOKEN" in result.stderr


def test_trigger_retrain_starts_the_retrain_workflow_on_the_runs_branch(api):
    state, env = api
    result = make("trigger-retrain", env={**env, "GITHUB_REF_NAME": "main"})
    assert result.returncode == 0, result.stderr
    assert state.read("calls.json", []) == [
        {"call": "dispatch", "workflow": "retrain.yml", "body": {"ref": "main"},
         "authorization": "Bearer"}]
    # A refused call fails the step (curl -f), not a silent green job.
    result = make("trigger-retrain", env={**env, "GITHUB_REF_NAME": "main",
                                          "GITHUB_REPOSITORY": "owner/other"})
    assert result.returncode != 0 and "404" in result.stderr


def reviewers(*logins: str) -> dict:
    return {"protection_rules": [{"type": "wait_timer", "wait_timer": 5}, {
        "type": "required_reviewers",
        "reviewers": [{"type": "User", "reviewer": {"login": who}} for who in logins]}]}


def approved(*logins: str, environment: str = "production", state: str = "approved") -> list:
    return [{"state": state, "user": {"login": who}, "environments": [{"name": environment}]}
            for who in logins]


@pytest.mark.parametrize("case", [
    # (DEPLOY_TARGET, environment, this run's approvals, ALLOW_UNREVIEWED_PRODUCTION,
    #  exit code, deploy, message)
    ("", None, [], "", 0, "false", "production is not configured, so nothing was deployed"),
    ("kubernetes", reviewers("alice", "bob"), approved("bob"), "", 0, "true",
     "approved by bob (environment 'production' requires a review by one of alice, bob): "
     "deploying to kubernetes"),
    # Rules, but no approval on record: an administrator's bypass, or rules GitHub
    # ignores on the plan; an approval of another environment, or a rejection.
    ("docker", reviewers("alice"), [], "", 1, None,
     "this run has no approval of environment 'production' by a reviewer"),
    ("docker", reviewers("alice"), approved("alice", environment="qa") + approved(
        "alice", state="rejected"), "", 1, None, "has no approval of environment"),
    ("docker", None, [], "", 1, None, "environment 'production' does not exist"),
    ("docker", {"protection_rules": [{"type": "wait_timer"}]}, [], "", 1, None,
     "has no required reviewers, so this run would deploy with nobody's approval"),
    ("docker", {"protection_rules": [{"type": "required_reviewers", "reviewers": []}]}, [], "",
     1, None, "has no required reviewers"),
    ("docker", {"protection_rules": []}, [], "true", 0, "true",
     "as ALLOW_UNREVIEWED_PRODUCTION=true allows"),
    ("bogus", reviewers("alice"), approved("alice"), "", 2, None,
     "DEPLOY_TARGET='bogus' is not one of"),
], ids=["fresh-fork", "approved", "bypassed", "not-this-environment", "no-environment",
        "no-reviewers", "empty-reviewers", "allowed", "bad-target"])
def test_production_check_deploys_only_where_configured_and_approved(api, tmp_path, case):
    target, environment, approvals, allow, code, deploy, message = case
    state, env = api
    if environment is not None:
        state.write("environments.json", {"production": environment})
    state.write("approvals.json", approvals)
    outputs = tmp_path / "outputs.txt"
    result = make("production-check", f"OUTPUTS_OUT={outputs}", env={
        **env, "DEPLOY_TARGET": target, "ALLOW_UNREVIEWED_PRODUCTION": allow,
        "GITHUB_RUN_ID": "77", "VERSION": "3", "DIGEST": "sha256:" + "ab" * 32})
    assert result.returncode == (2 if code else 0), result.stderr  # make: 2 on any failure
    if code:
        assert f"production-check] Error {code}" in result.stderr
        assert not outputs.exists() or "deploy=true" not in outputs.read_text()
    else:
        assert outputs.read_text() == f"deploy={deploy}\n"
    assert message in result.stdout + result.stderr
    # The environment and the run's reviews are read only when a target is configured.
    asked = state.read("requests.log.json", [])
    assert any("/environments/production" in line for line in asked) == bool(target)
    assert any("/actions/runs/77/approvals" in line for line in asked) == bool(target)


def test_production_check_refuses_to_deploy_without_the_qa_jobs_version_and_digest(api):
    """An output GitHub dropped (it contained a secret's value) must not mean "alias qa"."""
    state, env = api
    state.write("environments.json", {"production": reviewers("alice")})
    state.write("approvals.json", approved("alice"))
    for missing in ("VERSION", "DIGEST"):
        handed = {"VERSION": "3", "DIGEST": "sha256:" + "ab" * 32, missing: ""}
        result = make("production-check", env={**env, "DEPLOY_TARGET": "docker",
                                               "GITHUB_RUN_ID": "77", **handed})
        assert result.returncode == 2 and "production-check] Error 1" in result.stderr
        assert f"the QA job handed over no {missing}" in result.stderr


def test_promote_and_rollback_refuse_a_github_hosted_runners_own_engine(isolated):
    """Production on the job's VM would vanish with the job while the alias said it serves."""
    env = {**isolated, "RUNNER_ENVIRONMENT": "github-hosted", "DOCKER_HOST": ""}
    for target in ("promote", "rollback"):
        result = make(target, env=env)
        assert result.returncode == 2, result.stderr
        assert "refusing to deploy production" in result.stderr
        assert "PRODUCTION_RUNNER" in result.stderr and "DOCKER_HOST=ssh://" in result.stderr


def test_verify_attestation_checks_provenance_and_sbom_signed_by_the_release_workflow(
        isolated, tmp_path):
    from mlflow import MlflowClient

    from tests.conftest import model_settings

    env, calls = fake_gh(tmp_path)
    env = {**isolated, **env, "MLOPS_SOURCE_REF": ""}
    assert make("pipeline", env=env).returncode == 0
    result = make("verify-attestation", "VERSION=1", env=env)
    # make exits 2 when a recipe fails; the recipe's own code is in "Error N".
    assert result.returncode != 0 and "version 1's image was never pushed" in result.stderr
    assert "verify-attestation] Error 1" in result.stderr

    ref = "ghcr.io/owner/diabetes-ridge@sha256:" + "ab" * 32
    uri = model_settings(tracking_uri="", store_dir=tmp_path / ".mlflow").resolved_tracking_uri
    MlflowClient(tracking_uri=uri, registry_uri=uri).set_model_version_tag(
        "diabetes-ridge", "1", "image.ref", ref)
    result = make("verify-attestation", "VERSION=1", env=env)
    assert result.returncode == 0, result.stderr
    signer = ("--repo owner/repo --signer-workflow owner/repo/.github/workflows/release.yml "
              "--source-ref refs/heads/main --deny-self-hosted-runners")
    assert calls.read_text() == (
        f"attestation verify oci://{ref} {signer}\n"
        f"attestation verify oci://{ref} {signer} --predicate-type https://cyclonedx.org/bom\n")
    assert "SBOM attestation of" in result.stdout

    # gh says no (unsigned, signed elsewhere, wrong digest): refused, exit 1.
    (tmp_path / "bin" / "gh").write_text("#!/bin/sh\necho 'no matching attestations' >&2\n"
                                         "exit 1\n")
    result = make("verify-attestation", "VERSION=1", env=env)
    assert result.returncode != 0 and "verify-attestation] Error 1" in result.stderr
    assert "the build provenance attestation of" in result.stderr
    assert "no matching attestations" in result.stderr and "nothing was deployed" in result.stderr
    result = make("verify-attestation", "VERSION=1", env={**env, "GITHUB_REPOSITORY": ""})
    assert "verify-attestation] Error 2" in result.stderr and "set GITHUB_REPOSITORY" in \
        result.stderr

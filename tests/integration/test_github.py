"""The make targets behind the GitHub Actions workflows, against local stand-ins.

`store-restore` talks to a fake GitHub REST API on a loopback port; `keepalive`
runs a recording `gh` placed first on PATH.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

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
TRUSTED_RUN = {"event": "schedule", "path": ".github/workflows/retrain.yml",
               "head_branch": "main", "head_repository": {"full_name": "owner/repo"}}


class FakeGitHub:
    """Serves the repository, its artifacts, their runs and artifact zips from memory."""

    def __init__(self, artifacts: list[dict], blobs: dict[int, bytes], status: int = 200):
        """``artifacts``: dicts with id, created_at, expired, and optionally ``run``
        (fields of the workflow run that uploaded it, merged over TRUSTED_RUN) and
        ``summary`` (fields of the artifact's own workflow_run summary)."""
        self.requests: list[tuple[str, str]] = []
        fake = self
        listed: list[dict] = []
        runs: dict[int, dict] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                fake.requests.append((self.path, self.headers.get("Authorization", "")))
                path = self.path.split("?")[0]
                if status != 200:
                    return self._send(status, b'{"message": "Resource not accessible"}')
                if path == "/repos/owner/repo":
                    return self._json({"id": REPO_ID, "full_name": "owner/repo",
                                       "default_branch": "main"})
                if path == "/repos/owner/repo/actions/artifacts":
                    return self._json({"artifacts": listed})
                if path.startswith("/repos/owner/repo/actions/runs/"):
                    return self._json(runs[int(path.rsplit("/", 1)[1])])
                if path.startswith("/zip/"):
                    return self._send(200, blobs[int(path.rsplit("/", 1)[1])])
                return self._send(404, b"{}")

            def _json(self, payload):
                self._send(200, json.dumps(payload).encode())

            def _send(self, code, body):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        for spec in artifacts:
            run_id = 1000 + spec["id"]
            runs[run_id] = {"id": run_id, **TRUSTED_RUN, **spec.get("run", {})}
            listed.append({
                "id": spec["id"], "name": "mlflow-store", "created_at": spec["created_at"],
                "expired": spec.get("expired", False),
                "archive_download_url": f"{self.url}/zip/{spec['id']}",
                "workflow_run": {"id": run_id, "repository_id": REPO_ID,
                                 "head_repository_id": REPO_ID,
                                 "head_branch": runs[run_id]["head_branch"],
                                 **spec.get("summary", {})},
            })
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

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
    return zipped(root / ".mlflow")


def test_store_restore_brings_back_the_newest_registry(isolated, store_blob):
    blob = store_blob
    # The newest unexpired artifact wins; an expired newer one is skipped.
    fake = FakeGitHub(
        [{"id": 3, "created_at": "2026-01-01T00:00:00Z"},
         {"id": 7, "created_at": "2026-02-01T00:00:00Z",
          "run": {"event": "workflow_dispatch", "path": "owner/repo/.github/workflows/"
                                                        "release.yml@refs/heads/main"}},
         {"id": 9, "created_at": "2026-03-01T00:00:00Z", "expired": True}],
        {7: blob, 3: b"older"},
    )

    result = make("store-restore", env=github_env(isolated, fake))
    assert result.returncode == 0, result.stderr
    assert "restored the registry from artifact 7 of run 1007" in result.stdout
    assert all(auth == "Bearer t0ken" for _, auth in fake.requests)
    status = make("status", env=isolated)
    assert "champion" in status.stdout
    fake.server.shutdown()


POISONED = [
    # a pull request's run (a fork's or the repository's own) uploading the name
    {"run": {"event": "pull_request"}},
    {"run": {"event": "pull_request_target"}},
    # a fork's code: the artifact summary already says whose head it ran
    {"summary": {"head_repository_id": 666}},
    {"run": {"head_repository": {"full_name": "mallory/repo"}}},
    # a dispatch or push on a feature branch
    {"run": {"event": "workflow_dispatch", "head_branch": "feature"}},
    {"summary": {"head_branch": "feature"}},
    # the default branch, but a workflow that never writes the registry
    {"run": {"event": "push", "path": ".github/workflows/build.yml"}},
]


@pytest.mark.parametrize("poison", POISONED, ids=lambda p: json.dumps(p)[:60])
def test_store_restore_ignores_an_artifact_from_an_untrusted_run(isolated, store_blob, poison):
    """A newer mlflow-store uploaded by a PR, a fork, a branch or another workflow is
    never restored: the older artifact of the trusted retrain run is."""
    trusted = store_blob
    fake = FakeGitHub(
        [{"id": 3, "created_at": "2026-01-01T00:00:00Z"},
         {"id": 8, "created_at": "2026-02-01T00:00:00Z", **poison}],
        {3: trusted, 8: b"poisoned: never downloaded"},
    )
    result = make("store-restore", env=github_env(isolated, fake))
    assert result.returncode == 0, result.stderr
    assert "restored the registry from artifact 3 of run 1003" in result.stdout
    assert "ignored untrusted artifact 8" in result.stdout
    assert fake.downloaded() == {3}
    fake.server.shutdown()


def test_store_restore_with_only_untrusted_artifacts_starts_empty(isolated):
    fake = FakeGitHub([{"id": 8, "created_at": "2026-02-01T00:00:00Z",
                        "run": {"event": "pull_request"}}], {8: b"poisoned"})
    result = make("store-restore", env=github_env(isolated, fake))
    assert result.returncode == 0, result.stderr
    assert "no trusted 'mlflow-store' artifact" in result.stdout
    assert "'pull_request' run" in result.stdout
    assert fake.downloaded() == set()
    assert not Path(isolated["MLOPS_STORE_DIR"]).exists()
    fake.server.shutdown()


def test_store_restore_without_an_artifact_starts_empty(isolated):
    fake = FakeGitHub([], {})
    result = make("store-restore", env=github_env(isolated, fake))
    assert result.returncode == 0, result.stderr
    assert "starting with an empty registry" in result.stdout
    fake.server.shutdown()


def test_store_restore_reports_a_refused_api_call(isolated):
    fake = FakeGitHub([], {}, status=403)
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


def test_keepalive_re_enables_every_scheduled_workflow(tmp_path):
    env, calls = fake_gh(tmp_path)
    result = make("keepalive", env=env)
    assert result.returncode == 0, result.stderr
    assert calls.read_text() == ("workflow enable monitor.yml --repo owner/repo\n"
                                 "workflow enable retrain.yml --repo owner/repo\n")
    result = make("keepalive", env={**env, "GITHUB_REPOSITORY": ""})
    assert result.returncode != 0 and "set GITHUB_REPOSITORY" in result.stderr


def test_trigger_retrain_starts_the_retrain_workflow(tmp_path):
    env, calls = fake_gh(tmp_path)
    result = make("trigger-retrain", env=env)
    assert result.returncode == 0, result.stderr
    assert calls.read_text() == "workflow run retrain.yml --repo owner/repo\n"
    result = make("trigger-retrain", env={**env, "GITHUB_REPOSITORY": ""})
    assert result.returncode != 0 and "set GITHUB_REPOSITORY" in result.stderr


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
    env = {**isolated, **env}
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
    signer = "--repo owner/repo --signer-workflow owner/repo/.github/workflows/release.yml"
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

"""The make targets behind the GitHub Actions workflows, against local stand-ins.

`store-restore` talks to a fake GitHub REST API on a loopback port; `keepalive`
runs a recording `gh` placed first on PATH.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import REPO


def make(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-C", str(REPO), *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def isolated(tmp_path: Path) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": "",
        "MLOPS_STORE_DIR": str(tmp_path / ".mlflow"),
        "MLOPS_CACHE_DIR": str(tmp_path / "cache"),
        "MLOPS_REPORTS_DIR": str(tmp_path / "reports"),
    }


def test_summary_writes_the_job_summary_and_step_outputs(isolated, tmp_path):
    assert make("pipeline", env=isolated).returncode == 0
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs.txt"
    result = make("summary", f"SUMMARY_OUT={summary}", f"OUTPUTS_OUT={outputs}", env=isolated)
    assert result.returncode == 0, result.stderr
    text = summary.read_text()
    assert "<!-- mlops-pipeline-summary -->" in text
    assert "registered** as version 1" in text and "| rmse |" in text
    assert outputs.read_text() == "registered=true\nversion=1\n"
    assert (tmp_path / "reports" / "pipeline.md").read_text() == text


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


class FakeGitHub:
    """Serves /repos/<repo>/actions/artifacts and artifact zips from memory."""

    def __init__(self, specs: list[tuple[int, str, bool]], blobs: dict[int, bytes],
                 status: int = 200):
        """``specs``: (artifact id, created_at, expired) of each listed artifact."""
        self.requests: list[tuple[str, str]] = []
        fake = self
        artifacts: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                fake.requests.append((self.path, self.headers.get("Authorization", "")))
                if status != 200:
                    return self._send(status, b'{"message": "Resource not accessible"}')
                if self.path.startswith("/repos/owner/repo/actions/artifacts?"):
                    return self._send(200, json.dumps({"artifacts": artifacts}).encode())
                if self.path.startswith("/zip/"):
                    return self._send(200, blobs[int(self.path.rsplit("/", 1)[1])])
                return self._send(404, b"{}")

            def _send(self, code, body):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        artifacts += [
            {"id": ident, "created_at": created, "expired": expired,
             "archive_download_url": f"{self.url}/zip/{ident}",
             "workflow_run": {"id": 1000 + ident}}
            for ident, created, expired in specs
        ]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


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


def test_store_restore_brings_back_the_newest_registry(isolated, tmp_path):
    assert make("pipeline", env=isolated).returncode == 0
    blob = zipped(Path(isolated["MLOPS_STORE_DIR"]))
    shutil.rmtree(isolated["MLOPS_STORE_DIR"])
    # The newest unexpired artifact wins; an expired newer one is skipped.
    fake = FakeGitHub(
        [(3, "2026-01-01T00:00:00Z", False), (7, "2026-02-01T00:00:00Z", False),
         (9, "2026-03-01T00:00:00Z", True)],
        {7: blob, 3: b"older"},
    )

    result = make("store-restore", env=github_env(isolated, fake))
    assert result.returncode == 0, result.stderr
    assert "restored the registry from artifact 7 of run 1007" in result.stdout
    assert all(auth == "Bearer t0ken" for _, auth in fake.requests)
    status = make("status", env=isolated)
    assert "champion" in status.stdout
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


def test_keepalive_re_enables_the_retrain_workflow(tmp_path):
    env, calls = fake_gh(tmp_path)
    result = make("keepalive", env=env)
    assert result.returncode == 0, result.stderr
    assert calls.read_text() == "workflow enable retrain.yml --repo owner/repo\n"
    result = make("keepalive", env={**env, "GITHUB_REPOSITORY": ""})
    assert result.returncode != 0 and "set GITHUB_REPOSITORY" in result.stderr


def test_trigger_retrain_starts_the_retrain_workflow(tmp_path):
    env, calls = fake_gh(tmp_path)
    result = make("trigger-retrain", env=env)
    assert result.returncode == 0, result.stderr
    assert calls.read_text() == "workflow run retrain.yml --repo owner/repo\n"
    result = make("trigger-retrain", env={**env, "GITHUB_REPOSITORY": ""})
    assert result.returncode != 0 and "set GITHUB_REPOSITORY" in result.stderr

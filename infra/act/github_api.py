"""A local stand-in for the GitHub REST API endpoints the workflows call.

`act` runs the workflows on this machine but models no GitHub API; the jobs
reach this server instead (`act --env GITHUB_API_URL=http://127.0.0.1:PORT`).
It serves, from a state folder shared by every run of one session:

- the repository, its default branch's head commit and `compare` (answered by
  git itself from the repository's own history);
- workflow runs (recorded by `infra/act/run.py` before each act run) and their
  artifacts, read from act's artifact server folder (``artifacts/RUN/NAME/``),
  with the zip download;
- issue comments (the pull-request summary comment), workflow `enable` and
  `dispatches` (keepalive, trigger-retrain), and environments.

It is a test double with GitHub's shapes and paging, not an emulator: only the
fields the project reads are filled in. Standard library only.

State folder:
    runs.json          [{id, workflow, path, event, head_branch, head_sha, ...}]
    artifacts/         act's --artifact-server-path
    environments.json  {"production": {"protection_rules": [...]}, ...} (optional)
    workflows.json     {"monitor.yml": "disabled_manually", ...} (optional; default active)
    approvals.json     {"production": ["login", ...]}: who approved each run's environment
                       (or a list: the review history every run answers with)
    comments.json      written here
    calls.json         enable/dispatch calls, written here
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import re
import subprocess
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

REPOSITORY_ID = 4242
LOCK = threading.RLock()


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class State:
    """The JSON files of one state folder."""

    def __init__(self, root: Path, repository: str, repo_dir: Path, default_branch: str):
        self.root, self.repository = root, repository
        self.repo_dir, self.default_branch = repo_dir, default_branch
        (root / "artifacts").mkdir(parents=True, exist_ok=True)

    def read(self, name: str, default: Any) -> Any:
        path = self.root / name
        return json.loads(path.read_text()) if path.exists() else default

    def write(self, name: str, value: Any) -> None:
        path = self.root / name
        path.with_suffix(".tmp").write_text(json.dumps(value, indent=1))
        path.with_suffix(".tmp").replace(path)

    def git(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(self.repo_dir), *args],
                              capture_output=True, text=True, check=False)

    def artifacts(self, base: str, run_id: int | None = None) -> list[dict[str, Any]]:
        """Artifacts act's artifact server stored, newest first."""
        found = []
        for run in self.read("runs.json", []):
            if run_id is not None and run["id"] != run_id:
                continue
            folder = self.root / "artifacts" / str(run["id"])
            for index, directory in enumerate(sorted(folder.glob("*"))):
                files = [p for p in directory.rglob("*") if p.is_file()]
                if not files:
                    continue
                created = max(p.stat().st_mtime for p in files)
                artifact_id = run["id"] * 100 + index
                found.append({
                    "id": artifact_id, "name": directory.name,
                    "size_in_bytes": sum(p.stat().st_size for p in files),
                    "created_at": _iso(created), "updated_at": _iso(created),
                    "expired": False,
                    "archive_download_url": f"{base}/download/{run['id']}/{directory.name}",
                    "workflow_run": {"id": run["id"], "repository_id": REPOSITORY_ID,
                                     "head_repository_id": REPOSITORY_ID,
                                     "head_branch": run["head_branch"],
                                     "head_sha": run["head_sha"]},
                })
        return sorted(found, key=lambda a: a["created_at"], reverse=True)

    def zipped(self, run_id: str, name: str) -> bytes | None:
        """The artifact as GitHub serves it: one zip of its files.

        act's server keeps an upload-artifact v4 upload as the zip it was sent
        (``NAME/NAME.zip``); anything else is zipped here.
        """
        directory = self.root / "artifacts" / run_id / name
        if (directory / f"{name}.zip").is_file():
            return (directory / f"{name}.zip").read_bytes()
        if not directory.is_dir():
            return None
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for path in sorted(directory.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(directory))
        return buffer.getvalue()


def _page(items: list[Any], query: dict[str, str]) -> list[Any]:
    per_page = min(int(query.get("per_page", 30)), 100)
    page = int(query.get("page", 1))
    return items[(page - 1) * per_page: page * per_page]


def handler(state: State) -> type[BaseHTTPRequestHandler]:
    owner_repo = re.escape(state.repository)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            with LOCK:
                calls = state.read("requests.log.json", [])
                calls.append(f"{self.command} {self.path}")
                state.write("requests.log.json", calls)

        def _send(self, code: int, payload: Any = None, raw: bytes | None = None) -> None:
            kind = "application/zip" if raw is not None else "application/json"
            body = raw if raw is not None else json.dumps(
                {} if payload is None else payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _base(self) -> str:
            address: Any = self.server.server_address
            return f"http://{address[0]}:{address[1]}"

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def _route(self) -> tuple[str, dict[str, str]]:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            return parts.path.removeprefix("/api/v3"), query

        def _authorized(self) -> bool:
            if self.headers.get("Authorization", "").startswith(("Bearer ", "token ")):
                return True
            self._send(401, {"message": "Requires authentication"})
            return False

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if not self._authorized():
                return
            path, query = self._route()
            with LOCK:
                return self._get(path, query)

        def _get(self, path: str, query: dict[str, str]) -> None:
            base = f"^/repos/{owner_repo}"
            if re.fullmatch(base, path):
                return self._send(200, {"id": REPOSITORY_ID, "full_name": state.repository,
                                        "default_branch": state.default_branch,
                                        "private": False})
            if m := re.fullmatch(base + r"/branches/(.+)", path):
                head = state.git("rev-parse", "--verify", "-q", f"refs/heads/{m[1]}^{{commit}}")
                if head.returncode:
                    return self._send(404, {"message": "Branch not found"})
                return self._send(200, {"name": m[1], "commit": {"sha": head.stdout.strip()}})
            if m := re.fullmatch(base + r"/compare/([0-9a-f]{7,40})\.\.\.([0-9a-f]{7,40})", path):
                return self._send(200, {"status": self._compare(m[1], m[2])})
            if m := re.fullmatch(base + r"/actions/workflows/([\w.-]+)", path):
                state_of = state.read("workflows.json", {}).get(m[1], "active")
                return self._send(200, {"path": f".github/workflows/{m[1]}", "state": state_of})
            if m := re.fullmatch(base + r"/actions/workflows/([\w.-]+)/runs", path):
                runs = [r for r in state.read("runs.json", []) if r["workflow"] == m[1]
                        and query.get("branch") in (None, r["head_branch"])]
                runs.sort(key=lambda r: r["created_at"], reverse=True)
                return self._send(200, {"total_count": len(runs),
                                        "workflow_runs": _page(runs, query)})
            if m := re.fullmatch(base + r"/actions/runs/(\d+)/artifacts", path):
                found = [a for a in state.artifacts(self._base(), int(m[1]))
                         if query.get("name") in (None, a["name"])]
                return self._send(200, {"total_count": len(found),
                                        "artifacts": _page(found, query)})
            if re.fullmatch(base + r"/actions/runs/(\d+)/approvals", path):
                # act cannot wait for a reviewer: approvals.json says who approved
                # each environment, for every run that reaches it (or is the
                # review history itself, as a list).
                approvals = state.read("approvals.json", {})
                if isinstance(approvals, dict):
                    approvals = [
                        {"state": "approved", "comment": "approved (act stand-in)",
                         "user": {"login": login}, "environments": [{"name": environment}]}
                        for environment, logins in approvals.items() for login in logins]
                return self._send(200, approvals)
            if m := re.fullmatch(base + r"/actions/runs/(\d+)", path):
                run = next((r for r in state.read("runs.json", []) if r["id"] == int(m[1])), None)
                return self._send(200, run) if run else self._send(404, {"message": "Not Found"})
            if re.fullmatch(base + r"/actions/artifacts", path):
                found = [a for a in state.artifacts(self._base())
                         if query.get("name") in (None, a["name"])]
                return self._send(200, {"total_count": len(found),
                                        "artifacts": _page(found, query)})
            if m := re.fullmatch(r"/download/(\d+)/([\w.-]+)", path):
                blob = state.zipped(m[1], m[2])
                return self._send(200, raw=blob) if blob else self._send(404)
            if m := re.fullmatch(base + r"/issues/(\d+)/comments", path):
                comments = [c for c in state.read("comments.json", [])
                            if c["issue"] == int(m[1])]
                return self._send(200, _page(comments, query))
            if m := re.fullmatch(base + r"/environments/([\w.-]+)", path):
                environment = state.read("environments.json", {}).get(m[1])
                if environment is None:
                    return self._send(404, {"message": "Not Found"})
                return self._send(200, {"name": m[1], **environment})
            return self._send(404, {"message": f"not served by the stand-in: GET {path}"})

        def _compare(self, base_sha: str, head_sha: str) -> str:
            if state.git("rev-parse", base_sha).stdout == state.git("rev-parse",
                                                                    head_sha).stdout:
                return "identical"
            if not state.git("merge-base", "--is-ancestor", head_sha, base_sha).returncode:
                return "behind"
            if not state.git("merge-base", "--is-ancestor", base_sha, head_sha).returncode:
                return "ahead"
            return "diverged"

        def do_POST(self) -> None:  # noqa: N802
            if not self._authorized():
                return
            path, _ = self._route()
            body = self._body()
            with LOCK:
                if m := re.fullmatch(f"/repos/{owner_repo}/issues/(\\d+)/comments", path):
                    comments = state.read("comments.json", [])
                    comment = {"id": 1 + max([c["id"] for c in comments], default=0),
                               "issue": int(m[1]), "body": body["body"],
                               "user": {"login": "github-actions[bot]", "type": "Bot"}}
                    state.write("comments.json", [*comments, comment])
                    return self._send(201, comment)
                if m := re.fullmatch(f"/repos/{owner_repo}/actions/workflows/([\\w.-]+)/"
                                     "dispatches", path):
                    self._record("dispatch", m[1], body)
                    return self._send(204, raw=b"")
            return self._send(404, {"message": f"not served by the stand-in: POST {path}"})

        def do_PATCH(self) -> None:  # noqa: N802
            if not self._authorized():
                return
            path, _ = self._route()
            body = self._body()
            with LOCK:
                if m := re.fullmatch(f"/repos/{owner_repo}/issues/comments/(\\d+)", path):
                    comments = state.read("comments.json", [])
                    for comment in comments:
                        if comment["id"] == int(m[1]):
                            comment["body"] = body["body"]
                            state.write("comments.json", comments)
                            return self._send(200, comment)
            return self._send(404, {"message": f"not served by the stand-in: PATCH {path}"})

        def do_PUT(self) -> None:  # noqa: N802
            if not self._authorized():
                return
            path, _ = self._route()
            with LOCK:
                if m := re.fullmatch(f"/repos/{owner_repo}/actions/workflows/([\\w.-]+)/enable",
                                     path):
                    self._record("enable", m[1], {})
                    workflows = state.read("workflows.json", {})
                    state.write("workflows.json", {**workflows, m[1]: "active"})
                    return self._send(204, raw=b"")
            return self._send(404, {"message": f"not served by the stand-in: PUT {path}"})

        def _record(self, kind: str, workflow: str, body: Any) -> None:
            calls = state.read("calls.json", [])
            calls.append({"call": kind, "workflow": workflow, "body": body,
                          "authorization": self.headers.get("Authorization", "")[:6]})
            state.write("calls.json", calls)

    return Handler


def serve(state: State, port: int = 0) -> ThreadingHTTPServer:
    """Start the stand-in on 127.0.0.1 in a thread; ``server.server_address[1]`` is its port."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler(state))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--repository", default="owner/repo")
    parser.add_argument("--repo-dir", type=Path, default=Path.cwd())
    parser.add_argument("--default-branch", default="main")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = serve(State(args.state, args.repository, args.repo_dir, args.default_branch),
                   args.port)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()

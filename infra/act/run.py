"""Run a workflow (or one job of it) on this machine with act, as GitHub would.

    python infra/act/run.py EVENT --workflow build.yml [--job pipeline]
        [--var NAME=VALUE ...] [--secret NAME=VALUE ...] [--input NAME=VALUE ...]
        [--state .cache/act] [--actions DIR]

`make act` calls this. What it adds to a bare `act EVENT`:

- every job runs on this machine (act's host mode: ``-P ubuntu-latest=-self-hosted``),
  with this Python laid out in act's tool cache as the hosted runners lay out
  theirs, so ``actions/setup-python`` finds it instead of downloading one;
- the pinned actions come from GitHub, or from ``--actions DIR`` (an offline
  mirror laid out ``OWNER/REPO@SHA/``, for machines that cannot reach GitHub);
- the GitHub REST API the jobs call is a local stand-in (``github_api.py``)
  sharing one state folder with every other run: each act run is recorded
  there as a workflow run (event, branch, commit, workflow file), act's
  artifact server keeps the artifacts there, so `make store-restore` in a later
  run finds what an earlier run uploaded, exactly as on GitHub;
- a token for ``github.token``, the event's payload (a pull request from a
  branch of this repository, a dispatch's inputs, the schedule).

The exit code is act's: non-zero when any job failed. Standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from github_api import LOCK, State, serve  # noqa: E402 - the folder is not a package

EVENTS = ("push", "pull_request", "workflow_dispatch", "schedule")


def dotenv_value(value: str) -> str:
    """A secret as act's secret file reads it: multi-line values (a PEM key) double-quoted."""
    if "\n" not in value and '"' not in value and "\\" not in value:
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def tool_cache_python(tool_cache: Path) -> Path:
    """This interpreter as ``Python/X.Y.Z/x64`` in act's tool cache (setup-python's lookup)."""
    version = ".".join(map(str, sys.version_info[:3]))
    prefix = tool_cache / "Python" / version / "x64"
    binary = Path(sys._base_executable if hasattr(sys, "_base_executable") else sys.executable)
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"):
        link = prefix / "bin" / name
        if not link.is_symlink():
            link.symlink_to(binary.resolve())
    include = Path(sysconfig.get_paths()["include"])
    if include.is_dir() and not (prefix / "include").exists():
        (prefix / "include").symlink_to(include.parent)
    (tool_cache / "Python" / version / "x64.complete").touch()
    return prefix


def free_port() -> int:
    """A loopback port nobody listens on (act's artifact server has a fixed default)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def pairs(values: list[str], what: str) -> dict[str, str]:
    result = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            sys.exit(f"{what} must be NAME=VALUE, got {value!r}")
        result[name] = text
    return result


def payload(event: str, repository: str, branch: str, sha: str, default_branch: str,
            inputs: dict[str, str], pr_number: int) -> dict[str, object]:
    """The event payload GitHub would send, with the fields the workflows read."""
    repo = {"full_name": repository, "name": repository.split("/")[1],
            "owner": {"login": repository.split("/")[0]}, "default_branch": default_branch}
    if event == "pull_request":
        return {"action": "synchronize", "number": pr_number, "repository": repo,
                "pull_request": {"number": pr_number,
                                 "head": {"ref": branch, "sha": sha, "repo": repo},
                                 "base": {"ref": default_branch, "repo": repo}}}
    if event == "workflow_dispatch":
        return {"ref": f"refs/heads/{branch}", "inputs": inputs, "repository": repo}
    if event == "schedule":
        return {"schedule": "scheduled", "repository": repo}
    return {"ref": f"refs/heads/{branch}", "after": sha, "repository": repo,
            "head_commit": {"id": sha}}


# What a runner's job sees of this machine's environment: the machine's own
# setup (paths, locale, proxies, CA bundles, package indexes), as a
# self-hosted runner's service has it, and nothing of the caller's project
# configuration (KUBECONFIG, MLFLOW_*, MLOPS_*, DOCKER_HOST, REQUIRE_*...),
# which must come from the workflow's env, variables and secrets, as on GitHub.
RUNNER_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TERM", "TMPDIR", "TZ",
              "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO")
RUNNER_ENV_PREFIXES = ("PIP_", "UV_", "SSL_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                       "http_proxy", "https_proxy", "no_proxy")


def runner_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items()
            if name in RUNNER_ENV or name.startswith(RUNNER_ENV_PREFIXES)}


def record_run(state: State, run: dict[str, object]) -> None:
    with LOCK:
        runs = [r for r in state.read("runs.json", []) if r["id"] != run["id"]]
        state.write("runs.json", [*runs, run])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("event", choices=EVENTS)
    parser.add_argument("--workflow", required=True, help="file name in .github/workflows")
    parser.add_argument("--job", help="run only this job (default: every job the event starts)")
    parser.add_argument("--var", action="append", default=[], help="repository variable")
    parser.add_argument("--secret", action="append", default=[], help="secret (may span lines)")
    parser.add_argument("--input", action="append", default=[], help="workflow_dispatch input")
    parser.add_argument("--env", action="append", default=[],
                        help="environment of every step (e.g. PYTEST_ARGS=...)")
    parser.add_argument("--state", type=Path, default=Path(".cache/act"),
                        help="runs, artifacts and API state shared by the runs of a session")
    parser.add_argument("--actions", type=Path, default=None,
                        help="offline mirror of the pinned actions, OWNER/REPO@SHA/ folders")
    parser.add_argument("--repository", default="owner/repo")
    parser.add_argument("--default-branch", default=None,
                        help="the repository's default branch (default: the checked-out one,"
                        " so that this branch's runs are the trusted ones)")
    parser.add_argument("--branch", help="the run's branch (default: the checked-out one)")
    parser.add_argument("--pr-number", type=int, default=1)
    parser.add_argument("--act", default=str(Path(sys.executable).parent / "act"))
    args = parser.parse_args(argv)

    workflow = Path(".github/workflows") / args.workflow
    if not workflow.is_file():
        sys.exit(f"no workflow {workflow}")
    state_dir = args.state.resolve()
    sha = git("rev-parse", "HEAD")
    branch = args.branch or git("rev-parse", "--abbrev-ref", "HEAD")
    if branch == "HEAD":  # detached: play the default branch
        branch = args.default_branch or "main"
    checked_out = git("rev-parse", "--abbrev-ref", "HEAD")
    default_branch = args.default_branch or (checked_out if checked_out != "HEAD" else "main")
    state = State(state_dir, args.repository, Path.cwd(), default_branch)
    with LOCK:
        run_id = 1000 + len(state.read("runs.json", []))
    run = {"id": run_id, "workflow": args.workflow, "path": str(workflow), "event": args.event,
           "head_branch": branch, "head_sha": sha, "status": "in_progress",
           "head_repository": {"full_name": args.repository},
           "repository": {"full_name": args.repository},
           "created_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    record_run(state, run)

    tool_cache = Path.home() / ".cache" / "act" / "tool_cache"
    tool_cache_python(tool_cache)
    server = serve(state)
    api = f"http://127.0.0.1:{server.server_address[1]}"
    event_file = state_dir / f"event-{run_id}.json"
    event_file.write_text(json.dumps(payload(args.event, args.repository, branch, sha,
                                             default_branch, pairs(args.input, "--input"),
                                             args.pr_number)))
    secret_file = state_dir / f"secrets-{run_id}.env"
    secret_values = {"GITHUB_TOKEN": secrets.token_hex(20), **pairs(args.secret, "--secret")}
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.writelines(f"{k}={dotenv_value(v)}\n" for k, v in secret_values.items())

    command = [args.act, args.event, "-W", str(workflow), "-e", str(event_file),
               "-P", "ubuntu-latest=-self-hosted",
               "--artifact-server-path", str(state_dir / "artifacts"),
               "--artifact-server-addr", "127.0.0.1", "--artifact-server-port", str(free_port()),
               "--cache-server-addr", "127.0.0.1",
               "--secret-file", str(secret_file),
               "--env", f"GITHUB_API_URL={api}", "--env", f"GITHUB_REPOSITORY={args.repository}",
               "--env", f"GITHUB_RUN_ID={run_id}"]
    if args.job:
        command += ["-j", args.job]
    for name, value in pairs(args.var, "--var").items():
        command += ["--var", f"{name}={value}"]
    for name, value in pairs(args.env, "--env").items():
        command += ["--env", f"{name}={value}"]
    if args.actions:
        for folder in sorted(args.actions.resolve().glob("*/*@*")):
            command += ["--local-repository", f"{folder.parent.name}/{folder.name}={folder}"]
    print(f"[act] run {run_id}: {args.event} {workflow}{' job ' + args.job if args.job else ''} "
          f"on {branch} ({sha[:12]}); GitHub API stand-in at {api}", flush=True)
    started = time.monotonic()
    try:
        code = subprocess.run(command, check=False, env=runner_env()).returncode
    finally:
        secret_file.unlink(missing_ok=True)
        server.shutdown()
    run.update(status="completed", conclusion="success" if code == 0 else "failure")
    record_run(state, run)
    print(f"[act] run {run_id} {'succeeded' if code == 0 else 'FAILED'} "
          f"in {time.monotonic() - started:.0f}s", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())

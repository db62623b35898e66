"""Fixtures for running the workflows under act (`make workflows`).

One state folder (runs, artifacts, comments, API calls) for the whole session,
as one GitHub repository: later runs see what earlier ones uploaded. A real
image registry (Debian's docker-registry) stands in for GHCR.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.servers import docker_registry

RUNNER = REPO / "infra" / "act" / "run.py"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
JOB_END = re.compile(r"^\[(?P<job>[^\]]+)\] \S*\s+Job (?P<result>succeeded|failed)", re.M)


@dataclass
class Run:
    """One act run: its exit code, its log and each job's result."""

    code: int
    log: str
    jobs: dict[str, str] = field(default_factory=dict)

    def explain(self) -> str:
        return f"act exited {self.code}; jobs {self.jobs}\n" + self.log[-6000:]


@dataclass
class Repository:
    """The repository the runs belong to: a state folder and a GitHub API stand-in's files.

    ``root`` is the fork the workflows run in: this working tree as one commit,
    plus the commit a fork makes once, trusting its signing key (whose private
    half is the repository secret MODEL_SIGNING_KEY in every run).
    """

    root: Path
    state: Path
    registry: str
    actions: Path | None
    env: dict[str, str]
    secrets: dict[str, str] = field(default_factory=dict)
    runs: list[Path] = field(default_factory=list)

    def read(self, name: str, default: object) -> object:
        path = self.state / name
        return json.loads(path.read_text()) if path.exists() else default

    def set_environment(self, name: str, reviewers: list[str],
                        approved_by: list[str] | None = None) -> None:
        """Protection rules of environment ``name``; ``approved_by`` approves every run.

        act has no approval wait: the API stand-in answers each run's review
        history with ``approved_by``, as GitHub would after a reviewer approved.
        """
        environments = dict(self.read("environments.json", {}))  # type: ignore[arg-type]
        rules = [{"type": "required_reviewers",
                  "reviewers": [{"type": "User", "reviewer": {"login": r}} for r in reviewers]}]
        environments[name] = {"protection_rules": rules if reviewers else []}
        (self.state / "environments.json").write_text(json.dumps(environments))
        approvals = dict(self.read("approvals.json", {}))  # type: ignore[arg-type]
        approvals[name] = approved_by or []
        (self.state / "approvals.json").write_text(json.dumps(approvals))

    def act(self, event: str, workflow: str, *, job: str | None = None,
            variables: dict[str, str] | None = None, secrets: dict[str, str] | None = None,
            inputs: dict[str, str] | None = None, env: dict[str, str] | None = None,
            branch: str | None = None, timeout: float = 1500) -> Run:
        command = [sys.executable, str(self.root / RUNNER.relative_to(REPO)), event,
                   "--workflow", workflow, "--state", str(self.state)]
        if job:
            command += ["--job", job]
        if branch:
            command += ["--branch", branch]
        if self.actions:
            command += ["--actions", str(self.actions)]
        all_secrets = {**self.secrets, **(secrets or {})}
        for flag, values in (("--var", variables), ("--secret", all_secrets),
                             ("--input", inputs),
                             ("--env", {**self.env, **(env or {})})):
            for name, value in (values or {}).items():
                command += [flag, f"{name}={value}"]
        log_file = self.state / f"{workflow}-{event}-{job or 'all'}-{len(self.runs)}.log"
        self.runs.append(log_file)
        with log_file.open("w") as handle:  # followed while it runs: tail -f
            result = subprocess.run(command, cwd=self.root, stdout=handle,
                                    stderr=subprocess.STDOUT, text=True, timeout=timeout)
        log = ANSI.sub("", log_file.read_text())
        jobs = {m["job"].strip(): m["result"] for m in JOB_END.finditer(log)}
        return Run(result.returncode, log, jobs)


def jobs_of(workflow: str) -> dict:
    data = yaml.safe_load((REPO / ".github" / "workflows" / workflow).read_text())
    return data["jobs"]


@pytest.fixture(scope="session")
def local_registry(tmp_path_factory):
    """Debian's docker-registry on a loopback port (Docker trusts 127.0.0.0/8 over HTTP)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed (make test-deps)")
    address, process = docker_registry(binary, tmp_path_factory.mktemp("registry"))
    yield address
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def repository(tmp_path_factory, local_registry) -> Repository:
    """A repository's state for the session; steps get only what a runner would have.

    The jobs run on this machine's Docker engine, which cannot pull the
    default base image here: MLOPS_BASE_IMAGE (a locally built equivalent)
    is handed to every step, as a self-hosted runner's environment would.
    """
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine answers: the workflows' image jobs need one")
    actions = os.environ.get("ACT_ACTIONS")
    env = {name: os.environ[name] for name in ("MLOPS_BASE_IMAGE",) if os.environ.get(name)}
    key = Path(os.environ["MLOPS_SIGNING_KEY_FILE"])  # the session's (tests/conftest.py)
    public = Path(os.environ["MLOPS_SIGNING_TRUSTED"]) / "tests.pub"
    root = fork(tmp_path_factory.mktemp("fork") / "mlops-template", public)
    return Repository(root, tmp_path_factory.mktemp("act-state"), local_registry,
                      Path(actions) if actions else None, env,
                      {"MODEL_SIGNING_KEY": key.read_text()})


def fork(root: Path, public_key: Path) -> Path:
    """This working tree (what git would commit, changes included) as a new repository.

    Then the one commit a fork makes before its first retrain: its signing
    key's public half in infra/signing/trusted/ (`make signing-key`).
    """
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name, follow_symlinks=False)
    git = ["git", "-c", "user.name=fork", "-c", "user.email=fork@example.invalid",
           "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "--quiet", "--initial-branch", "main"], cwd=root, check=True)
    subprocess.run([*git, "add", "--all"], cwd=root, check=True)
    subprocess.run([*git, "commit", "--quiet", "-m", "the template"], cwd=root, check=True)
    shutil.copy2(public_key, root / "infra" / "signing" / "trusted" / "pipeline.pub")
    subprocess.run([*git, "add", "--all"], cwd=root, check=True)
    subprocess.run([*git, "commit", "--quiet", "-m", "trust the pipeline's signing key"],
                   cwd=root, check=True)
    return root


def kubeconfig_secret() -> tuple[str, str]:
    """(path, base64 text) of the local cluster's kubeconfig (`make cluster-up`)."""
    cache = Path(os.environ.get("MLOPS_CACHE_HOME", Path.home() / ".cache" / "mlops-template"))
    path = Path(os.environ.get("KUBECONFIG") or cache / "cluster" / "kubeconfig")
    if not path.is_file():
        pytest.fail(f"no Kubernetes cluster: {path} does not exist (make cluster-up)")
    return str(path), base64.b64encode(path.read_bytes()).decode()

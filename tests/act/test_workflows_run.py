"""The four workflows, executed: every job under act, on the events a fork sees.

Run by `make workflows` (and so by .ci/run), in this order, as one repository:

The repository is a fork of this working tree that made the one commit a fork
makes before its first retrain: its signing key trusted in
infra/signing/trusted/, the private key as the secret MODEL_SIGNING_KEY.

1. a fresh fork (no other secrets, no environments): a push to main and a pull
   request (build.yml), the weekly retrain (retrain.yml, calling release.yml)
   and the daily drift check (monitor.yml); every run green, production ending
   with a notice that it is not configured; then a drift check on a drifted
   scoring log, which starts a retrain;
2. a manual retrain (`force`) of unchanged data: nothing registered, no release;
3. a configured repository: a manual release whose QA job pushes the image and
   whose production job deploys that digest to the local Kubernetes cluster.

What this machine cannot give the jobs is swapped through variables, and only
that: REGISTRY_HOST (a local docker-registry for GHCR) and ATTESTATIONS=false
(act has no OIDC token to sign with). The steps the swaps skip, the approval
wait and everything else only GitHub can show are listed in
docs/github-setup.md.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.act.conftest import Repository, Run, jobs_of, kubeconfig_secret

pytestmark = pytest.mark.e2e


def unreachable_services(repository: Repository) -> dict[str, str]:
    """The repository variables that stand in for GitHub services act cannot reach."""
    return {"REGISTRY_HOST": repository.registry, "ATTESTATIONS": "false"}


def assert_green(run: Run, expected: set[str]) -> None:
    """act exited 0, and exactly the ``expected`` jobs (by act's label) ran and succeeded."""
    assert run.code == 0, run.explain()
    assert set(run.jobs) == expected, run.explain()
    assert set(run.jobs.values()) == {"succeeded"}, run.explain()


def test_a_push_to_main_runs_every_build_job(repository):
    # The test job's pytest runs the static workflow tests only: the whole
    # suite is what `make test` runs, once.
    run = repository.act("push", "build.yml", variables=unreachable_services(repository),
                         env={"PYTEST_ARGS": "tests/workflows/test_workflows.py"})
    assert_green(run, {f"build/{job}" for job in jobs_of("build.yml")})
    assert "starting with an empty registry" in run.log
    assert "would register" in run.log


def test_a_pull_request_gets_one_summary_comment_updated_on_every_push(repository):
    for _ in range(2):  # created by the first push, updated by the second
        run = repository.act("pull_request", "build.yml", job="pipeline", branch="feature")
        assert_green(run, {"build/pipeline"})
        comments = repository.read("comments.json", [])
        assert len(comments) == 1, comments
        assert comments[0]["body"].startswith("<!-- mlops-pipeline-summary -->")
        assert "### Training pipeline" in comments[0]["body"]


def test_the_weekly_retrain_of_a_fresh_fork_registers_releases_to_qa_and_stops_at_a_notice(
        repository):
    run = repository.act("schedule", "retrain.yml", variables=unreachable_services(repository))
    # release.yml's attest job is skipped (ATTESTATIONS=false); production runs
    # its guard step only: no DEPLOY_TARGET yet.
    assert_green(run, {"retrain/retrain", "release/release/qa", "release/release/production",
                       "retrain/keepalive"})
    assert "registered** as version 1" in run.log
    assert "QA passed" in run.log and "pushed version 1:" in run.log
    assert "production is not configured, so nothing was deployed" in run.log
    assert "make promote" not in run.log
    calls = repository.read("calls.json", [])
    assert sorted(c["workflow"] for c in calls if c["call"] == "enable") == [
        "monitor.yml", "retrain.yml"]
    runs = repository.read("runs.json", [])
    assert runs[-1]["workflow"] == "retrain.yml" and runs[-1]["conclusion"] == "success"
    assert (repository.state / "artifacts" / str(runs[-1]["id"]) / "mlflow-store").is_dir()


def test_the_daily_drift_check_of_a_fresh_fork_ends_with_a_notice(repository):
    run = repository.act("schedule", "monitor.yml")
    # No drift found (nothing to check): the retrain job is skipped.
    assert_green(run, {"monitor/drift", "monitor/keepalive"})
    assert "restored the registry from artifact" in run.log
    assert "SCORING_LOG_URI" in run.log


def drifted_scoring_log(repository: Repository, workdir: Path) -> Path:
    """A scoring log of shifted requests, scored by the champion the retrain stored."""
    import zipfile

    import pandas as pd
    from fastapi.testclient import TestClient

    from diabetes_regression.spec import SPEC
    from ml_service.github import relocate_store
    from ml_service.registry import connect
    from ml_service.registry.export import export_bundle
    from ml_service.serving import create_app
    from ml_service.settings import Settings
    from tests.conftest import DATA, model_settings
    from tests.integration.test_monitoring import shifted

    newest = max(repository.state.glob("artifacts/*/mlflow-store/mlflow-store.zip"),
                 key=lambda p: int(p.parts[-3]))
    store = workdir / ".mlflow"
    with zipfile.ZipFile(newest) as archive:
        archive.extractall(store)
    relocate_store(store)
    registry = connect(model_settings(tracking_uri="", store_dir=store))
    export_bundle(registry, registry.alias_version("champion"), workdir / "bundle", SPEC)
    log_dir = workdir / "scoring-log"
    frame = shifted(pd.read_csv(DATA))
    app = create_app(Settings(bundle_dir=workdir / "bundle", scoring_log_dir=log_dir))
    with TestClient(app) as client:
        for start in range(0, 400, 20):
            rows = frame.iloc[start:start + 20][SPEC.contract.feature_names].values.tolist()
            assert client.post("/score", json={"data": rows}).status_code == 200
    return log_dir


def test_a_drift_check_that_finds_drift_starts_a_retrain(repository, tmp_path):
    log_dir = drifted_scoring_log(repository, tmp_path)
    run = repository.act("workflow_dispatch", "monitor.yml",
                         variables={"SCORING_LOG_URI": log_dir.as_uri()})
    # keepalive runs on the schedule only.
    assert_green(run, {"monitor/drift", "monitor/retrain"})
    assert "drift detected" in run.log
    branch = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], capture_output=True,
                            text=True, check=True, cwd=repository.root).stdout.strip()
    dispatch = repository.read("calls.json", [])[-1]
    assert dispatch["call"] == "dispatch" and dispatch["workflow"] == "retrain.yml"
    assert dispatch["body"] == {"ref": branch}


def test_a_forced_manual_retrain_of_unchanged_data_registers_no_duplicate(repository):
    run = repository.act("workflow_dispatch", "retrain.yml", inputs={"force": "true"},
                         variables=unreachable_services(repository))
    # "Not better" (here: identical) is a normal outcome; no release is called.
    assert_green(run, {"retrain/retrain"})
    assert "not registered" in run.log and "identical to registered version 1" in run.log


def test_a_configured_repository_releases_what_qa_passed_to_the_cluster(repository):
    path, kubeconfig = kubeconfig_secret()
    repository.set_environment("production", reviewers=["release-manager"],
                               approved_by=["release-manager"])
    try:
        run = repository.act(
            "workflow_dispatch", "release.yml", inputs={"version": "1"},
            variables={**unreachable_services(repository), "DEPLOY_TARGET": "kubernetes"},
            secrets={"KUBE_CONFIG_DATA": kubeconfig, "GHCR_PULL_TOKEN": "read-token"},
            # The local cluster runs Kubernetes 1.20: its overlay (no policy/v1).
            env={"MLOPS_KUBE_OVERLAY_PRODUCTION": "infra/kubernetes/overlays/production-1.20"})
        assert_green(run, {"release/qa", "release/production"})
        pushed = re.search(r"pushed version 1: (\S+@sha256:[0-9a-f]{64})", run.log)
        assert pushed, run.explain()
        assert "approved by release-manager" in run.log
        assert "installed the kubeconfig" in run.log and "/kubeconfig" in run.log
        assert "promoted version 1 to production" in run.log
        deployment = json.loads(subprocess.run(
            ["kubectl", "--kubeconfig", path, "-n", "mlops-production", "get",
             "deployment/scoring", "-o", "json"],
            capture_output=True, text=True, check=True, timeout=60).stdout)
        containers = deployment["spec"]["template"]["spec"]["containers"]
        assert [c["image"] for c in containers] == [pushed[1]]
    finally:
        subprocess.run(["kubectl", "--kubeconfig", path, "delete", "namespace",
                        "mlops-production", "--ignore-not-found", "--wait=false"],
                       capture_output=True, timeout=60)

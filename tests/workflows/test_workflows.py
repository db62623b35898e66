"""The GitHub Actions workflows, checked statically.

Each test fails if a workflow calls a make target that does not exist or that
no test exercises, loses its approval environment, gains a write permission it
does not need, or stops wiring the retrain outputs into the release.
"""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from tests.conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"
ACTION = REPO / ".github" / "actions" / "setup" / "action.yml"
MAKEFILE = (REPO / "Makefile").read_text()
TARGETS = set(re.findall(r"^([a-z][a-z-]*):", MAKEFILE, flags=re.M))
PINNED = re.compile(r"^\s*(?:-\s*)?uses:\s*([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # v\d[\w.]*\s*$")


def load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads `on:` as true
    return data


BUILD, RETRAIN, RELEASE = load("build.yml"), load("retrain.yml"), load("release.yml")
MONITOR = load("monitor.yml")
ALL = {"build.yml": BUILD, "retrain.yml": RETRAIN, "release.yml": RELEASE,
       "monitor.yml": MONITOR}


def run_steps():
    """(file, job, run text) of every `run:` step, the composite action's included."""
    for name, workflow in ALL.items():
        for job_name, job in workflow["jobs"].items():
            for step in job.get("steps", []):
                if "run" in step:
                    yield name, job_name, step["run"]
    for step in yaml.safe_load(ACTION.read_text())["runs"]["steps"]:
        if "run" in step:
            yield "action.yml", "setup", step["run"]


def called_targets() -> set[str]:
    targets = set()
    for _, _, text in run_steps():
        for word in shlex.split(text)[1:]:
            if "=" not in word:
                targets.add(word)
    return targets


def test_every_run_step_is_a_make_call_with_no_expressions():
    for name, job, text in run_steps():
        lines = [line for line in text.strip().splitlines() if line.strip()]
        assert len(lines) == 1, f"{name}:{job}: one make call per step"
        assert shlex.split(lines[0])[0] == "make", f"{name}:{job}: {text!r} is not `make ...`"
        assert "${{" not in text, f"{name}:{job}: expressions belong in env:, not run:"


def test_every_called_target_exists():
    missing = called_targets() - TARGETS
    assert not missing, f"workflows call undefined make targets: {missing}"


def test_every_called_target_is_exercised_by_the_test_suite():
    sources = [p.read_text() for p in (REPO / "tests").rglob("*.py")]
    sources.append((REPO / ".ci" / "run").read_text())
    exercised = set()
    for text in sources:
        calls = re.findall(r"\bmake\(([^)]*)\)", text)
        calls += re.findall(r"\[\"make\",([^\]]*)\]", text, flags=re.S)
        for call in calls:
            exercised.update(re.findall(r"[\"']([a-z][a-z-]*)[\"']", call))
        exercised.update(re.findall(r"^\s*make ([a-z][a-z-]*)\s*$", text, flags=re.M))
    unexercised = called_targets() - exercised
    assert not unexercised, f"no test runs these workflow targets: {unexercised}"


def test_triggers():
    assert set(BUILD["on"]) == {"push", "pull_request"}
    assert set(RETRAIN["on"]) == {"schedule", "workflow_dispatch", "push"}
    assert RETRAIN["on"]["schedule"][0]["cron"].split()[4] == "1"  # weekly
    assert RETRAIN["on"]["workflow_dispatch"]["inputs"]["force"]["type"] == "boolean"
    assert RETRAIN["on"]["push"]["paths"] == ["data/**"]
    assert set(RELEASE["on"]) == {"workflow_call", "workflow_dispatch"}
    assert set(MONITOR["on"]) == {"schedule", "workflow_dispatch"}
    assert MONITOR["on"]["schedule"][0]["cron"].split()[2:] == ["*", "*", "*"]  # daily
    for trigger in ("workflow_call", "workflow_dispatch"):
        assert "version" in RELEASE["on"][trigger]["inputs"]


def test_release_goes_through_qa_then_an_approved_production_environment():
    qa, production = RELEASE["jobs"]["qa"], RELEASE["jobs"]["production"]
    assert qa["environment"] == "qa"
    assert production["environment"] == "production"
    assert production["needs"] == "qa"
    assert RELEASE["concurrency"] == {"group": "release", "cancel-in-progress": False}
    qa_runs = [s.get("run") for s in qa["steps"]]
    assert qa_runs.index("make release") < qa_runs.index("make push")
    assert "make promote" in [s.get("run") for s in production["steps"]]
    assert not any("make image" in (s.get("run") or "") for s in production["steps"])


def test_retrain_outputs_are_wired_to_the_release_call():
    retrain = RETRAIN["jobs"]["retrain"]
    assert retrain["outputs"] == {
        "registered": "${{ steps.result.outputs.registered }}",
        "version": "${{ steps.result.outputs.version }}",
    }
    result_step = next(s for s in retrain["steps"] if s.get("id") == "result")
    assert 'OUTPUTS_OUT="$GITHUB_OUTPUT"' in result_step["run"]
    release = RETRAIN["jobs"]["release"]
    assert release["uses"] == "./.github/workflows/release.yml"
    assert release["needs"] == "retrain"
    assert release["if"] == "needs.retrain.outputs.registered == 'true'"
    assert release["with"] == {"version": "${{ needs.retrain.outputs.version }}"}


EXPECTED_PERMISSIONS = {
    ("build.yml", "quality"): {"contents": "read"},
    ("build.yml", "test"): {"contents": "read"},
    ("build.yml", "pipeline"): {"contents": "read", "actions": "read", "pull-requests": "write"},
    ("build.yml", "image"): {"contents": "read"},
    ("retrain.yml", "retrain"): {"contents": "read", "actions": "read"},
    ("retrain.yml", "release"): {"contents": "read", "actions": "read", "packages": "write"},
    ("retrain.yml", "keepalive"): {"actions": "write"},
    ("release.yml", "qa"): {"contents": "read", "actions": "read", "packages": "write"},
    ("release.yml", "production"): {"contents": "read", "actions": "read", "packages": "read"},
    ("monitor.yml", "drift"): {"contents": "read", "actions": "read"},
    ("monitor.yml", "retrain"): {"actions": "write"},
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_permissions_are_least_privilege_per_job(name):
    workflow = ALL[name]
    assert workflow["permissions"] == {}, "no default permissions at workflow level"
    for job_name, job in workflow["jobs"].items():
        assert job["permissions"] == EXPECTED_PERMISSIONS[(name, job_name)], job_name


@pytest.mark.parametrize("name", sorted(ALL))
def test_jobs_have_timeouts_and_checkouts_keep_no_credentials(name):
    for job_name, job in ALL[name]["jobs"].items():
        if "uses" in job:  # a reusable-workflow call: its jobs carry the timeouts
            continue
        assert 0 < job["timeout-minutes"] <= 30, job_name
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, job_name


def test_third_party_actions_are_pinned_by_sha_with_a_version_comment():
    files = [*WORKFLOWS.glob("*.yml"), ACTION]
    uses = [line for path in files for line in path.read_text().splitlines()
            if re.match(r"^\s*(-\s*)?uses:", line)]
    assert uses
    for line in uses:
        if "./.github/" in line:
            continue
        assert PINNED.match(line), f"not pinned by SHA with a # vX comment: {line.strip()}"


def test_the_embedded_registry_travels_only_when_no_server_is_configured():
    for workflow, job in ((RETRAIN, "retrain"), (RELEASE, "qa"), (RELEASE, "production")):
        steps = workflow["jobs"][job]["steps"]
        runs = [s.get("run") for s in steps]
        assert runs.index("make store-restore") < max(
            i for i, s in enumerate(steps) if s.get("with", {}).get("name") == "mlflow-store"
        )
        upload = next(s for s in steps if s.get("with", {}).get("name") == "mlflow-store")
        assert "env.MLFLOW_TRACKING_URI == ''" in upload["if"]
        assert upload["with"]["include-hidden-files"] is True
    build_steps = BUILD["jobs"]["pipeline"]["steps"]
    assert not any(s.get("with", {}).get("name") == "mlflow-store" for s in build_steps)
    assert {"run": "make pipeline ARGS=--dry-run"} in build_steps


def test_the_pull_request_comment_is_updated_not_duplicated_and_skipped_for_forks():
    step = next(s for s in BUILD["jobs"]["pipeline"]["steps"]
                if s.get("uses", "").startswith("actions/github-script@"))
    assert "head.repo.full_name == github.repository" in step["if"]
    script = step["with"]["script"]
    assert "<!-- mlops-pipeline-summary -->" in script
    assert "updateComment" in script and "createComment" in script


def test_dependabot_watches_actions_and_python():
    config = yaml.safe_load((REPO / ".github" / "dependabot.yml").read_text())
    ecosystems = {u["package-ecosystem"] for u in config["updates"]}
    assert ecosystems == {"github-actions", "uv"}


def test_monitor_reports_drift_and_starts_a_retrain_only_when_drift_was_found():
    drift = MONITOR["jobs"]["drift"]
    step = next(s for s in drift["steps"] if s.get("id") == "drift")
    assert step["run"].startswith("make drift") and "--no-fail" in step["run"]
    assert 'OUTPUTS_OUT="$GITHUB_OUTPUT"' in step["run"]
    assert 'SUMMARY_OUT="$GITHUB_STEP_SUMMARY"' in step["run"]
    assert drift["outputs"] == {"drifted": "${{ steps.drift.outputs.drifted }}"}
    report = next(s for s in drift["steps"] if s.get("with", {}).get("name") == "drift-report")
    assert report["if"] == "always()"
    retrain = MONITOR["jobs"]["retrain"]
    assert retrain["needs"] == "drift"
    assert retrain["if"] == "needs.drift.outputs.drifted == 'true'"
    assert [s.get("run") for s in retrain["steps"]][-1] == "make trigger-retrain"

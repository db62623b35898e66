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
PREREQUISITES = {
    name: set(re.findall(r"[a-z][a-z-]*", deps.split("##")[0]))
    for name, deps in re.findall(r"^([a-z][a-z-]*):(?!=)(.*)$", MAKEFILE, flags=re.M)
}
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


def targets_of(text: str) -> set[str]:
    """The make targets one `make ...` command line names."""
    return {word for word in shlex.split(text)[1:] if "=" not in word}


def called_targets() -> set[str]:
    return {target for _, _, text in run_steps() for target in targets_of(text)}


def reached(targets: set[str]) -> set[str]:
    """``targets`` and every target they depend on, transitively."""
    seen, todo = set(), list(targets)
    while todo:
        target = todo.pop()
        if target not in seen:
            seen.add(target)
            todo += PREREQUISITES.get(target, set()) & TARGETS
    return seen


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
    unexercised = called_targets() - reached(exercised)
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
    assert production["needs"] == ["qa", "attest"]
    # After QA and its attestations, or QA alone when ATTESTATIONS=false skips them.
    assert "needs.qa.result == 'success'" in production["if"]
    assert "needs.attest.result == 'skipped'" in production["if"]
    assert "!cancelled()" in production["if"]
    for job in (qa, production):
        assert job["concurrency"]["cancel-in-progress"] is False
        # `queue: max` would keep every pending run, but act (which executes
        # these workflows in .ci/run) rejects the key: the limit is documented.
        assert "queue" not in job["concurrency"]
    qa_runs = [s.get("run") for s in qa["steps"]]
    assert qa_runs.index("make release") < qa_runs.index('make push OUTPUTS_OUT="$GITHUB_OUTPUT"')
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


def test_retrain_trains_the_many_models_set_only_when_the_repository_asks():
    """Context availability (GitHub docs): steps.if may read `vars` but not `secrets`,
    so the switch is a repository variable and the cluster address a secret in env."""
    steps = RETRAIN["jobs"]["retrain"]["steps"]
    runs = [s.get("run") for s in steps]
    many = next(s for s in steps if s.get("run") == "make train-many")
    assert many["if"] == "vars.MANY_MODELS == 'true'" and "secrets" not in many["if"]
    assert many["env"] == {"RAY_ADDRESS": "${{ secrets.RAY_ADDRESS }}",
                           "MLOPS_SIGNING_KEY": "${{ secrets.MODEL_SIGNING_KEY }}"}
    # After the pipeline (same registry), before the registry artifact is kept.
    assert runs.index('make pipeline ARGS="$FORCE_FLAG"') < runs.index("make train-many")
    upload = next(i for i, s in enumerate(steps) if s.get("with", {}).get("name") == "mlflow-store")
    assert runs.index("make train-many") < upload


EXPECTED_PERMISSIONS = {
    ("build.yml", "quality"): {"contents": "read"},
    ("build.yml", "test"): {"contents": "read"},
    ("build.yml", "pipeline"): {"contents": "read", "actions": "read", "pull-requests": "write"},
    ("build.yml", "image"): {"contents": "read"},
    ("retrain.yml", "retrain"): {"contents": "read", "actions": "read"},
    ("retrain.yml", "release"): {"contents": "read", "actions": "read", "packages": "write",
                                 "id-token": "write", "attestations": "write"},
    ("retrain.yml", "keepalive"): {"actions": "write"},
    ("monitor.yml", "keepalive"): {"actions": "write"},
    ("release.yml", "qa"): {"contents": "read", "actions": "read", "packages": "write"},
    # Only this job can mint the OIDC token that signs: not the one running the model.
    ("release.yml", "attest"): {"contents": "read", "packages": "write", "id-token": "write",
                                "attestations": "write"},
    ("release.yml", "production"): {"contents": "read", "actions": "read", "packages": "read",
                                    "attestations": "read"},
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
    # No scoring-log location configured is a notice, not a daily red run.
    assert "--missing-ok" in step["run"]
    assert drift["env"]["MLOPS_SCORING_LOG_URI"] == "${{ vars.SCORING_LOG_URI }}"
    assert 'OUTPUTS_OUT="$GITHUB_OUTPUT"' in step["run"]
    assert 'SUMMARY_OUT="$GITHUB_STEP_SUMMARY"' in step["run"]
    assert drift["outputs"] == {"drifted": "${{ steps.drift.outputs.drifted }}"}
    report = next(s for s in drift["steps"] if s.get("with", {}).get("name") == "drift-report")
    assert report["if"] == "always()"
    retrain = MONITOR["jobs"]["retrain"]
    assert retrain["needs"] == "drift"
    assert retrain["if"] == "needs.drift.outputs.drifted == 'true'"
    assert [s.get("run") for s in retrain["steps"]][-1] == "make trigger-retrain"


SECRET = re.compile(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)")


def reusable_calls():
    """(caller file, job name, job, called workflow) of every local reusable-workflow call."""
    for name, workflow in ALL.items():
        for job_name, job in workflow["jobs"].items():
            uses = job.get("uses", "")
            if uses.startswith("./.github/workflows/"):
                yield name, job_name, job, load(uses.rsplit("/", 1)[1])


def test_every_secret_a_called_workflow_reads_reaches_it():
    """A called workflow's `secrets.X` is empty unless the caller passes X.

    Environment secrets (DOCKER_HOST and the SSH key of `production`) reach a
    called job only through `secrets: inherit`, so a callee with environment
    jobs must be called that way; passing names one by one brings repository
    secrets only.
    """
    calls = list(reusable_calls())
    assert calls, "retrain.yml calls release.yml"
    for name, job_name, job, called in calls:
        text = yaml.safe_dump(called["jobs"])
        read = set(SECRET.findall(text)) - {"GITHUB_TOKEN"}
        declared = set(called["on"]["workflow_call"].get("secrets") or {})
        assert read <= declared, f"undeclared secrets in the callee: {read - declared}"
        passed = job.get("secrets")
        uses_environments = any("environment" in j for j in called["jobs"].values())
        if uses_environments:
            assert passed == "inherit", f"{name}:{job_name} must use `secrets: inherit`"
        elif passed != "inherit":
            assert read <= set(passed or {}), f"{name}:{job_name} does not pass {read}"


def test_an_approval_wait_never_holds_a_concurrency_group_other_runs_need():
    """A group keeps one pending run: a run parked on an approval would cancel the rest.

    release.yml waits for the production reviewers inside the caller's run, so
    neither it nor its caller may hold a workflow-level group; the training
    job alone is serialised, and each release stage has its own group.
    """
    assert "concurrency" not in RETRAIN and "concurrency" not in RELEASE
    assert RETRAIN["jobs"]["retrain"]["concurrency"] == {
        "group": "retrain", "cancel-in-progress": False}
    groups = [job["concurrency"]["group"] for job in RELEASE["jobs"].values()
              if "concurrency" in job]
    assert "retrain" not in groups and len(set(groups)) == len(groups) == 2
    for _, _, _, called in reusable_calls():
        for job in called["jobs"].values():
            if job.get("environment") == "production":
                assert job["concurrency"]["group"] != RETRAIN["jobs"]["retrain"][
                    "concurrency"]["group"]


def test_every_scheduled_workflow_keeps_its_schedule_alive():
    scheduled = {name for name, workflow in ALL.items() if "schedule" in workflow["on"]}
    assert scheduled == {"retrain.yml", "monitor.yml"}
    for name in scheduled:
        jobs = ALL[name]["jobs"]
        keepalive = [j for j in jobs.values()
                     if any(s.get("run") == "make keepalive" for s in j.get("steps", []))]
        assert len(keepalive) == 1, name
        assert keepalive[0]["if"] == "github.event_name == 'schedule'"
        assert keepalive[0]["permissions"] == {"actions": "write"}


def test_lint_runs_in_one_build_job_only():
    jobs_reaching_lint = [
        job_name for job_name, job in BUILD["jobs"].items()
        if "lint" in reached({t for s in job.get("steps", []) if "run" in s
                              for t in targets_of(s["run"])})
    ]
    assert jobs_reaching_lint == ["quality"]


def test_the_test_job_installs_every_engine_it_requires():
    """REQUIRE_X=1 without the install fails on a fresh runner (it did for docker-registry).

    The build's test job requires exactly what .ci/run requires, and installs
    the test engines with the same make target before running the tests.
    """
    job = BUILD["jobs"]["test"]
    runs = [s.get("run") for s in job["steps"] if "run" in s]
    assert runs == ["make test-deps", "make pytest"]
    required = {k for k, v in job["env"].items() if k.startswith("REQUIRE_") and v == "1"}
    ci = (REPO / ".ci" / "run").read_text()
    in_ci = set(re.findall(r"export (REQUIRE_[A-Z]+)=1", ci))
    # The local cluster is built from Debian's source package, and Prometheus scrapes
    # it: .ci/run only.
    cluster = {"REQUIRE_KUBERNETES", "REQUIRE_PROMETHEUS"}
    assert required == in_ci - cluster and cluster <= in_ci
    in_tests = {m for p in (REPO / "tests").rglob("*.py")
                for m in re.findall(r"\"(REQUIRE_[A-Z]+)\"", p.read_text())}
    assert in_ci == in_tests
    assert "make test-deps" in ci and "make cluster-up" in ci


def test_both_release_stages_can_reach_a_lasting_engine():
    for job_name in ("qa", "production"):
        job = RELEASE["jobs"][job_name]
        assert job["env"]["DOCKER_HOST"] == "${{ secrets.DOCKER_HOST }}"
        # The SSH key reaches only the step that installs it.
        install = next(s for s in job["steps"] if s.get("run") == "make remote-engine")
        for secret in ("DOCKER_SSH_KEY", "DOCKER_SSH_KNOWN_HOSTS"):
            assert install["env"][secret] == "${{ secrets.%s }}" % secret, (job_name, secret)
            assert secret not in job["env"]
        runs = [s.get("run") for s in job["steps"]]
        deploy = "make release" if job_name == "qa" else "make promote"
        assert runs.index("make remote-engine") < runs.index(deploy)
    # A self-hosted runner on the serving host is the other lasting target.
    assert RELEASE["jobs"]["production"]["runs-on"] == (
        "${{ vars.PRODUCTION_RUNNER || 'ubuntu-latest' }}")


def test_production_can_deploy_to_a_cluster_and_qa_stays_a_container():
    """DEPLOY_TARGET=kubernetes moves production (only) to the cluster of KUBE_CONFIG_DATA."""
    production = RELEASE["jobs"]["production"]
    env = production["env"]
    assert env["MLOPS_DEPLOY_TARGET"] == "${{ vars.DEPLOY_TARGET || 'docker' }}"
    assert env["DEPLOY_TARGET"] == "${{ vars.DEPLOY_TARGET }}"  # unset: a notice, no deploy
    step_env = {s.get("run"): s.get("env", {}) for s in production["steps"] if "run" in s}
    assert step_env["make kubeconfig"] == {"KUBE_CONFIG_DATA": "${{ secrets.KUBE_CONFIG_DATA }}"}
    # The cluster pulls the QA image from GHCR (or REGISTRY_HOST) by digest, with a
    # long-lived read token that only the promote step sees.
    registry = "${{ vars.REGISTRY_HOST || 'ghcr.io' }}/${{ github.repository_owner }}"
    assert env["MLOPS_IMAGE_REGISTRY"] == RELEASE["jobs"]["qa"]["env"][
        "MLOPS_IMAGE_REGISTRY"] == registry
    assert step_env["make promote"]["MLOPS_REGISTRY_PASSWORD"] == "${{ secrets.GHCR_PULL_TOKEN }}"
    # A canary when the repository asks for one (its steps go to the job summary:
    # make promote appends them to $GITHUB_STEP_SUMMARY).
    assert step_env["make promote"]["MLOPS_CANARY_STEPS"] == "${{ vars.CANARY_STEPS }}"
    assert step_env["make promote"]["MLOPS_PROMETHEUS_URL"] == "${{ vars.PROMETHEUS_URL }}"
    assert "$(GITHUB_STEP_SUMMARY)" in (REPO / "Makefile").read_text().split(
        "promote_summary =")[1].splitlines()[0]
    for secret in ("KUBE_CONFIG_DATA", "MLOPS_REGISTRY_PASSWORD", "GITHUB_TOKEN", "GH_TOKEN"):
        assert secret not in env, secret
    runs = [s.get("run") for s in production["steps"]]
    assert runs.index("make kubeconfig") < runs.index("make promote")
    assert "MLOPS_DEPLOY_TARGET" not in RELEASE["jobs"]["qa"]["env"]
    secrets = RELEASE["on"]["workflow_call"]["secrets"]
    assert {"KUBE_CONFIG_DATA", "GHCR_PULL_TOKEN"} <= set(secrets)
    # Environment secrets reach a called workflow only through `secrets: inherit`.
    assert RETRAIN["jobs"]["release"]["secrets"] == "inherit"


LEVEL = {"none": 0, "read": 1, "write": 2}


def test_a_reusable_workflow_call_grants_what_the_called_jobs_ask_for():
    # GitHub: a called workflow's GITHUB_TOKEN can only be narrowed, never
    # widened; a called job asking for more than the caller grants makes the
    # whole run fail at start-up.
    for name, workflow in ALL.items():
        for job_name, job in workflow["jobs"].items():
            if not job.get("uses", "").startswith("./.github/workflows/"):
                continue
            called = load(job["uses"].rsplit("/", 1)[1])
            for called_name, called_job in called["jobs"].items():
                for scope, level in called_job["permissions"].items():
                    granted = job["permissions"].get(scope, "none")
                    assert LEVEL[granted] >= LEVEL[level], (
                        f"{name}:{job_name} grants {scope}: {granted}, but "
                        f"{job['uses']}:{called_name} needs {level}")


def test_the_qa_image_is_attested_by_digest_with_its_sbom_in_a_job_of_its_own():
    qa, attest = RELEASE["jobs"]["qa"], RELEASE["jobs"]["attest"]
    steps = qa["steps"]
    push = next(i for i, s in enumerate(steps) if s.get("run", "").startswith("make push"))
    assert steps[push]["id"] == "push" and 'OUTPUTS_OUT="$GITHUB_OUTPUT"' in steps[push]["run"]
    assert qa["outputs"] == {key: "${{ steps.push.outputs.%s }}" % key
                             for key in ("version", "image", "digest")}
    assert not any(s.get("uses", "").startswith("actions/attest@") for s in steps)
    assert attest["needs"] == "qa" and attest["if"] == "vars.ATTESTATIONS != 'false'"
    runs = [s.get("run") or s.get("uses", "") for s in attest["steps"]]
    sbom = runs.index('make sbom IMAGE="$IMAGE" SBOM_OUT=reports/sbom.cdx.json')
    assert attest["env"]["IMAGE"] == (
        "${{ needs.qa.outputs.image }}@${{ needs.qa.outputs.digest }}")
    attests = [(i, s) for i, s in enumerate(attest["steps"])
               if s.get("uses", "").startswith("actions/attest@")]
    assert len(attests) == 2 and all(i > sbom for i, _ in attests)
    for _, step in attests:
        assert step["with"]["subject-name"] == "${{ needs.qa.outputs.image }}"
        assert step["with"]["subject-digest"] == "${{ needs.qa.outputs.digest }}"
        assert step["with"]["push-to-registry"] is True
    provenance, sbom_statement = (s["with"] for _, s in attests)
    assert "sbom-path" not in provenance and "predicate-type" not in provenance
    # The file `make sbom` wrote: the SBOM read from the pushed image itself.
    assert sbom_statement["sbom-path"] == "reports/sbom.cdx.json"
    card = next(i for i, s in enumerate(steps) if s.get("run", "").startswith("make card"))
    assert 'SUMMARY_OUT="$GITHUB_STEP_SUMMARY"' in steps[card]["run"]


def test_production_deploys_exactly_the_version_and_digest_its_qa_job_passed():
    """Not whatever alias qa names when the approval comes: a later run may have moved it."""
    production = RELEASE["jobs"]["production"]
    assert production["env"]["VERSION"] == "${{ needs.qa.outputs.version }}"
    assert production["env"]["DIGEST"] == "${{ needs.qa.outputs.digest }}"
    runs = [s.get("run") for s in production["steps"]]
    # make reads both from the environment: the steps pass no other version.
    assert "make promote" in runs and "make verify-attestation" in runs
    assert not any("VERSION=" in (r or "") or "DIGEST=" in (r or "") for r in runs)


def test_production_checks_its_configuration_and_reviewers_before_anything_else():
    production = RELEASE["jobs"]["production"]
    steps = production["steps"]
    guard = next(i for i, s in enumerate(steps) if s.get("id") == "guard")
    assert steps[guard]["run"] == 'make production-check OUTPUTS_OUT="$GITHUB_OUTPUT"'
    assert all("uses" in s for s in steps[:guard])  # checkout and setup only
    for step in steps[guard + 1:]:
        assert "steps.guard.outputs.deploy == 'true'" in step["if"], step
    assert production["env"]["ALLOW_UNREVIEWED_PRODUCTION"] == (
        "${{ vars.ALLOW_UNREVIEWED_PRODUCTION }}")
    verify = next(s for s in steps if s.get("run") == "make verify-attestation")
    assert "vars.ATTESTATIONS != 'false'" in verify["if"]


def test_tokens_reach_only_the_steps_that_call_the_api():
    for name, workflow in ALL.items():
        for job_name, job in workflow["jobs"].items():
            assert "GITHUB_TOKEN" not in job.get("env", {}), (name, job_name)
            assert "GH_TOKEN" not in job.get("env", {}), (name, job_name)
            for step in job.get("steps", []):
                token = step.get("env", {}).get("GITHUB_TOKEN") or step.get("env", {}).get(
                    "GH_TOKEN")
                if token:
                    assert step["run"] in ("make store-restore", "make verify-attestation",
                                           "make keepalive", "make trigger-retrain",
                                           'make production-check OUTPUTS_OUT="$GITHUB_OUTPUT"'
                                           ), (name, job_name, step)


def test_build_cancels_superseded_runs_of_pull_requests_only():
    assert BUILD["concurrency"]["cancel-in-progress"] == (
        "${{ github.event_name == 'pull_request' }}")


def test_the_actions_run_on_node_24_but_upload_artifact():
    """checkout v7.0.1, setup-python v7.0.0, cache v5.0.5, login-action v4.1.0; upload-artifact
    stays at v4.6.2 (v7 cannot be had where CI runs the workflows)."""
    files = [*WORKFLOWS.glob("*.yml"), ACTION]
    pinned = re.compile(r"^\s*(?:-\s*)?uses:\s*([\w.-]+/[\w.-]+)@[0-9a-f]{40} # (v\S+)")
    versions = dict(match.groups() for path in files for line in path.read_text().splitlines()
                    if (match := pinned.match(line)))
    assert versions == {"actions/checkout": "v7.0.1", "actions/setup-python": "v7.0.0",
                        "actions/cache": "v5.0.5", "docker/login-action": "v4.1.0",
                        "actions/upload-artifact": "v4.6.2", "actions/github-script": "v8.0.0",
                        "actions/attest": "v4.2.2"}


def test_production_cannot_deploy_before_the_attestations_are_verified():
    runs = [s.get("run", "") or s.get("uses", "") for s in RELEASE["jobs"]["production"]["steps"]]
    verify = runs.index("make verify-attestation")
    login = next(i for i, r in enumerate(runs) if r.startswith("docker/login-action@"))
    # gh reads the image from GHCR: logged in first; and nothing deploys before it.
    assert login < verify < runs.index("make promote")
    assert all("promote" not in r and "rollback" not in r for r in runs[:verify])
    # Steps run in order and a failed step stops the job (no `always()` on promote).
    promote = RELEASE["jobs"]["production"]["steps"][runs.index("make promote")]
    assert promote["if"] == "steps.guard.outputs.deploy == 'true'"
    assert "continue-on-error" not in promote

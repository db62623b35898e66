"""Every Makefile target, run the way the README and the workflows run it."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, isolated_env
from tests.servers import free_port

MAKEFILE = (REPO / "Makefile").read_text()
TARGETS = re.findall(r"^([a-z][a-z-]*):.*## (.+)$", MAKEFILE, flags=re.M)


def make(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO):
    return subprocess.run(
        ["make", "-f", str(REPO / "Makefile"), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def isolated(tmp_path: Path) -> dict[str, str]:
    """The store, cache and reports under ``tmp_path``."""
    return isolated_env(tmp_path)


def test_help_is_the_default_goal_and_lists_every_target():
    result = make()
    assert result.returncode == 0
    for target, description in TARGETS:
        assert re.search(rf"^\s+{target}\s+{re.escape(description)}$", result.stdout, re.M)
        assert f".PHONY: {target}\n" in MAKEFILE, f"{target} is not .PHONY"
    names = {t for t, _ in TARGETS}
    assert {"help", "install", "lint", "test", "data-test", "pipeline", "status", "clean"} <= names


def test_install_is_a_no_op_once_the_lock_is_installed():
    first = make("install")
    assert first.returncode == 0, first.stderr
    second = make("install")
    assert second.returncode == 0 and "uv sync" not in second.stdout


def test_pipeline_registers_then_reruns_from_cache_and_status_shows_it(isolated, tmp_path):
    result = make("pipeline", env=isolated)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "registered version 1 as champion" in result.stdout
    summary = json.loads((tmp_path / "reports" / "pipeline.json").read_text())
    assert summary["registered"] is True

    result = make("pipeline", env=isolated)
    assert result.returncode == 0, result.stderr
    assert "not registered" in result.stdout and "reused from cache" in result.stdout

    status = make("status", env=isolated)
    assert status.returncode == 0 and "champion" in status.stdout


def test_a_build_jobs_ephemeral_key_signs_its_registry_and_nothing_else_trusts_it(
        isolated, tmp_path):
    """What build.yml's image job does: a key for the job, then pipeline and verify."""
    runner, github_env = tmp_path / "runner", tmp_path / "github_env"
    runner.mkdir()
    made = make("ephemeral-signing-key", env={"RUNNER_TEMP": str(runner),
                                              "GITHUB_ENV": str(github_env)})
    assert made.returncode == 0, made.stderr
    job = dict(line.split("=", 1) for line in github_env.read_text().splitlines())
    assert make("pipeline", env={**isolated, **job}).returncode == 0
    verified = make("verify", env={**isolated, **job})
    assert verified.returncode == 0, verified.stderr
    assert "diabetes-ridge version 1: signature valid" in verified.stdout
    # The session's own trusted keys do not include the job's key.
    refused = make("verify", "VERSION=1", env=isolated)
    assert refused.returncode == 2 and "which the repository does not trust" in refused.stderr
    usage = make("sign", env=isolated)
    assert usage.returncode == 2 and "usage: make sign VERSION=" in usage.stderr


def test_pipeline_passes_args_through(isolated):
    result = make("pipeline", "ARGS=--data missing.csv", env=isolated)
    assert result.returncode != 0
    assert "data file not found: missing.csv" in result.stderr


def test_lint_is_clean():
    result = make("lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_test_target_runs_lint_then_pytest():
    dry = make("-n", "test").stdout
    assert dry.index("flake8") < dry.index("pytest")


def test_data_target_regenerates_the_committed_files_unchanged():
    fixtures = sorted((REPO / "tests" / "data" / "fixtures").glob("*.csv"))
    tracked = [REPO / "data" / "diabetes.csv", *fixtures]
    before = {path: path.read_bytes() for path in tracked}
    result = make("data")
    assert result.returncode == 0, result.stderr
    assert {path: path.read_bytes() for path in tracked} == before


def test_data_test_runs_the_suite_tests():
    result = make("data-test")
    assert result.returncode == 0, result.stdout
    assert re.search(r"\d+ passed", result.stdout)


def test_clean_removes_outputs_but_keeps_the_registry(tmp_path):
    for directory in (".cache", "reports", "outputs", "pkg/__pycache__", ".mlflow"):
        (tmp_path / directory).mkdir(parents=True)
    result = make("clean", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mlflow", "pkg"]
    assert not (tmp_path / "pkg" / "__pycache__").exists()


def test_the_mlops_entry_point_exits_with_documented_codes(tmp_path):
    mlops = REPO / ".venv" / "bin" / "mlops"
    help_text = subprocess.run([mlops, "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0
    for command in ("validate", "train", "evaluate", "run", "status"):
        assert command in help_text.stdout
    bad = subprocess.run(
        [mlops, "validate", "--data", "tests/data/fixtures/wrong_types.csv"],
        capture_output=True, text=True, cwd=REPO,
        env={**os.environ, "MLOPS_REPORTS_DIR": str(tmp_path), "MLOPS_CACHE_DIR": str(tmp_path)},
    )
    assert bad.returncode == 3
    assert "column 'sex'" in bad.stderr and "Traceback" not in bad.stderr


def test_environment_exports_match_the_lock_file():
    exports = sorted((REPO / "environments").glob("*/*requirements.txt"))
    assert [f"{p.parent.name}/{p.name}" for p in exports] == [
        "ci/requirements.txt", "scoring/requirements.txt", "scoring/sbom-requirements.txt",
        "training/requirements.txt"]
    before = {path: path.read_text() for path in exports}
    result = make("environments")
    assert result.returncode == 0, result.stderr
    after = {path: path.read_text() for path in exports}
    assert after == before, "environments/ are stale: run `make environments` and commit"
    for text in after.values():
        pins = [line for line in text.splitlines() if line and line[0].isalpha()]
        assert pins and all("==" in line for line in pins)
        assert text.count("--hash=sha256:") >= len(pins)
    assert "pytest==" in after[REPO / "environments/ci/requirements.txt"]
    assert "pytest==" not in after[REPO / "environments/training/requirements.txt"]
    scoring = after[REPO / "environments/scoring/requirements.txt"]
    assert "fastapi==" in scoring and "mlflow==" not in scoring and "pandas==" not in scoring
    sbom_tool = after[REPO / "environments/scoring/sbom-requirements.txt"]
    assert "cyclonedx-bom==" in sbom_tool and "fastapi==" not in sbom_tool


def _registered(isolated: dict[str, str]) -> None:
    result = make("pipeline", env=isolated)
    assert result.returncode == 0, result.stdout + result.stderr


def test_serve_runs_the_champion_locally_without_docker(isolated, tmp_path):
    import time

    import requests

    _registered(isolated)
    port = free_port()
    env = {**os.environ, **isolated, "MLOPS_SERVE_PORT": str(port),
           "MLOPS_BUNDLE_DIR": str(tmp_path / "bundle")}
    server = subprocess.Popen(["make", "-C", str(REPO), "serve"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                health = requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline, "make serve did not come up"
                time.sleep(0.5)
        assert health.json()["model"]["version"] == 1
        row = [59.0, 2.0, 32.1, 101.0, 157.0, 93.2, 38.0, 4.0, 4.8598, 87.0]
        scored = requests.post(f"http://127.0.0.1:{port}/score", json={"data": [row]}, timeout=5)
        assert scored.status_code == 200 and len(scored.json()["result"]) == 1
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def test_bench_compares_with_mlflow_models_serve(isolated, tmp_path):
    _registered(isolated)
    result = make("bench", "BENCH_ARGS=--requests 40 --concurrency 2 --rounds 2", env=isolated)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads((tmp_path / "reports" / "bench.json").read_text())
    servers = {(r["server"], r["shape"]) for r in report["results"]}
    assert servers == {
        (server, shape)
        for server in ("scoring service", "scoring service, scikit-learn",
                       "scoring service + log", "bare ASGI (ceiling)", "mlflow models serve")
        for shape in ("1 row", "1000 rows")
    }
    assert all(r["errors"] == 0 and r["rps"] > 0 for r in report["results"])
    assert report["rounds"] == 2 and all(r["rounds"] == 2 for r in report["results"])
    assert "median of 2 rounds" in result.stdout
    assert set(report["ratios"]) == {"1 row", "1000 rows"}
    ratios = report["ratios"]
    assert all(r["log_throughput_x"] > 0 and r["ceiling_share"] > 0
               and r["runtime_vs_sklearn_x"] > 0 for r in ratios.values())
    ours = {r["shape"]: r["rps"] for r in report["results"] if r["server"] == "scoring service"}
    assert ratios["1000 rows"]["rows_per_s"] == round(ours["1000 rows"] * 1000)
    assert "throughput vs MLflow" in result.stdout and "share of the ceiling" in result.stdout
    assert "throughput vs scikit-learn runtime" in result.stdout


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_a_version_that_is_not_a_number_is_refused_before_anything_runs(tmp_path, how):
    """VERSION comes from a workflow_dispatch input: $(shell ...) in it must not run."""
    marker = tmp_path / "pwned"
    value = f"$(shell touch {marker})"
    if how == "argument":
        result = make("-n", "release", f"VERSION={value}")
    else:
        result = make("-n", "release", env={**os.environ, "VERSION": value})
    assert result.returncode != 0
    assert "VERSION must be a model version number" in result.stderr
    assert not marker.exists()
    assert "--version 12" in make("-n", "release", "VERSION=12").stdout


DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize("value", [
    "sha256:" + "0123456789ABCDEF" * 4,  # upper case
    DIGEST[:-1], DIGEST + "0",  # 63, 65 digits
    "0123456789abcdef" * 4, "sha512:" + "0123456789abcdef" * 4,
    f"{DIGEST} --version 1", f"{DIGEST};true",
])
def test_a_malformed_digest_is_a_make_error_before_anything_runs(tmp_path, value):
    for target in ("promote", "verify-attestation"):
        result = make("-n", target, "VERSION=1", f"DIGEST={value}")
        assert result.returncode == 2
        assert "DIGEST must be sha256: followed by 64 lowercase hex digits" in result.stderr


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_a_digest_is_taken_without_expanding_it(tmp_path, how):
    """DIGEST comes from a workflow output: $(shell ...) in it must not run."""
    marker = tmp_path / "pwned"
    value = f"$(shell touch {marker})"
    if how == "argument":
        result = make("-n", "promote", "VERSION=1", f"DIGEST={value}")
    else:
        result = make("-n", "promote", env={**os.environ, "VERSION": "1", "DIGEST": value})
    assert result.returncode == 2 and "DIGEST must be sha256:" in result.stderr
    assert not marker.exists()
    for target in ("promote", "verify-attestation"):
        dry = make("-n", target, "VERSION=12", f"DIGEST={DIGEST}").stdout
        assert f"mlops {target} --version 12 --digest {DIGEST}" in dry


def test_a_digest_without_a_version_is_a_usage_error(isolated):
    for target in ("promote", "verify-attestation"):
        result = make(target, f"DIGEST={DIGEST}", env={**isolated, "VERSION": ""})
        assert result.returncode == 2
        assert f"{target}] Error 2" in result.stderr  # mlops exited 2 (usage)
        assert "--digest needs --version (make: DIGEST needs VERSION)" in result.stderr
        assert "a digest alone does not name a model version" in result.stderr

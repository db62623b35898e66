"""The monitoring loop: scoring logs -> `mlops drift` and `mlops collect` -> `mlops run`."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from diabetes_regression.schema import CONTRACT
from diabetes_regression.spec import SPEC
from ml_service.serving import create_app
from ml_service.settings import Settings
from tests.conftest import DATA, model_settings

NAMES = CONTRACT.feature_names


def serve_and_log(workdir: Path, frame: pd.DataFrame, batch: int = 20) -> tuple[Path, list]:
    """Score ``frame`` through the real app with the scoring log on; return (log dir, ids)."""
    from ml_service.registry.export import export_bundle
    from ml_service.registry import connect

    settings = model_settings()
    registry = connect(settings)
    export_bundle(registry, registry.alias_version("champion"), workdir / "bundle", SPEC)
    log_dir = workdir / "scoring-log"
    app = create_app(Settings(bundle_dir=workdir / "bundle", scoring_log_dir=log_dir))
    ids = []
    with TestClient(app) as client:
        for start in range(0, len(frame), batch):
            rows = frame.iloc[start:start + batch][NAMES].values.tolist()
            response = client.post("/score", json={"data": rows})
            assert response.status_code == 200, response.text
            ids.append((response.json()["request_id"], len(rows)))
    return log_dir, ids


@pytest.fixture
def registered(cli):
    result, summary = cli.run()
    assert summary["registered"], result.output
    return cli


def shifted(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["bmi"] = (out["bmi"] * 1.3).clip(upper=80)
    out["s5"] = (out["s5"] + 0.6).clip(upper=8)
    return out


class Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.images, self._row = {}, 0, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and attrs.get("id", "").startswith("row-"):
            self._row = attrs["id"][4:]
            self.rows[self._row] = attrs.get("class")
        if tag == "img" and attrs.get("src", "").startswith("data:image/png;base64,"):
            self.images += 1


def test_drift_passes_requests_like_the_training_data(registered, workdir):
    sample = pd.read_csv(DATA).sample(400, replace=True, random_state=1)
    log_dir, _ = serve_and_log(workdir, sample)
    result = registered("drift", "--logs", str(log_dir))
    assert result.exit_code == 0, result.output
    assert "no drift" in result.stdout
    report = json.loads((workdir / "reports" / "drift" / "drift.json").read_text())
    assert report["drifted"] == [] and report["current_rows"] == 400
    page = Cells()
    page.feed((workdir / "reports" / "drift" / "drift.html").read_text())
    assert set(page.rows) == {*NAMES, "prediction"} and page.images == 11
    assert set(page.rows.values()) == {"ok"}


def test_drift_flags_a_shifted_log_with_exit_4_and_names_the_features(registered, workdir):
    sample = shifted(pd.read_csv(DATA).sample(400, replace=True, random_state=2))
    log_dir, _ = serve_and_log(workdir, sample)
    summary = workdir / "summary.md"
    result = registered("drift", "--logs", str(log_dir), "--markdown", str(summary))
    assert result.exit_code == 4, result.output
    assert "drift above threshold in" in result.stderr
    report = json.loads((workdir / "reports" / "drift" / "drift.json").read_text())
    assert {"bmi", "s5"} <= set(report["drifted"])
    assert "age" not in report["drifted"]
    assert "**drift detected**" in summary.read_text()
    page = Cells()
    page.feed((workdir / "reports" / "drift" / "drift.html").read_text())
    assert page.rows["bmi"] == "drift" and page.rows["age"] == "ok"


def test_drift_with_too_few_rows_says_so_and_passes(registered, workdir):
    log_dir, _ = serve_and_log(workdir, pd.read_csv(DATA).head(30))
    result = registered("drift", "--logs", str(log_dir))
    assert result.exit_code == 0 and "not enough to judge drift" in result.stdout


def test_drift_without_logs_is_a_usage_error(registered, workdir):
    result = registered("drift", "--logs", str(workdir / "nowhere"))
    assert result.exit_code == 2 and "scoring log directory not found" in result.stderr


def test_collect_turns_logs_and_outcomes_into_a_dataset_that_trains(registered, workdir):
    frame = pd.read_csv(DATA).sample(200, random_state=3).reset_index(drop=True)
    log_dir, ids = serve_and_log(workdir, frame, batch=10)
    outcomes = pd.DataFrame(
        [(request_id, row, frame.iloc[i * 10 + row]["target"])
         for i, (request_id, size) in enumerate(ids) for row in range(size)],
        columns=["request_id", "row", "target"],
    ).iloc[:-15]  # outcomes not known yet for the last requests
    outcomes.to_csv(workdir / "outcomes.csv", index=False)
    out = workdir / "collected.csv"
    result = registered("collect", "--logs", str(log_dir), "--outcomes",
                        str(workdir / "outcomes.csv"), "--out", str(out), "--base", str(DATA))
    assert result.exit_code == 0, result.output
    assert "185 of 200 logged rows matched an outcome" in result.stdout
    collected = pd.read_csv(out)
    assert list(collected.columns) == CONTRACT.columns and len(collected) == 442 + 185
    np.testing.assert_allclose(collected.iloc[442:][NAMES].values,
                               frame.iloc[:185][NAMES].values)
    assert registered("validate", "--data", str(out)).exit_code == 0
    result, summary = registered.run("--data", str(out))
    assert result.exit_code == 0, result.output
    assert summary["dataset_digest"] != ""


def test_collect_needs_row_indices_for_multi_row_requests(registered, workdir):
    log_dir, ids = serve_and_log(workdir, pd.read_csv(DATA).head(20), batch=10)
    pd.DataFrame({"request_id": [i for i, _ in ids], "target": [100.0, 120.0]}).to_csv(
        workdir / "outcomes.csv", index=False)
    result = registered("collect", "--logs", str(log_dir), "--outcomes",
                        str(workdir / "outcomes.csv"), "--out", str(workdir / "x.csv"))
    assert result.exit_code == 2 and "add the row index" in result.stderr


def test_collect_refuses_outcomes_that_break_the_contract(registered, workdir):
    log_dir, ids = serve_and_log(workdir, pd.read_csv(DATA).head(60), batch=1)
    pd.DataFrame({"request_id": [i for i, _ in ids], "target": [-50.0] * len(ids)}).to_csv(
        workdir / "outcomes.csv", index=False)
    result = registered("collect", "--logs", str(log_dir), "--outcomes",
                        str(workdir / "outcomes.csv"), "--out", str(workdir / "x.csv"))
    assert result.exit_code == 3
    assert "column 'target'" in result.stderr and not (workdir / "x.csv").exists()


def test_make_drift_and_make_collect_as_the_monitor_workflow_runs_them(registered, workdir):
    import os
    import subprocess

    from tests.conftest import REPO

    sample = shifted(pd.read_csv(DATA).sample(300, replace=True, random_state=4))
    log_dir, ids = serve_and_log(workdir, sample, batch=1)
    env = {**os.environ, "MLOPS_SCORING_LOG_DIR": str(log_dir)}
    outputs, summary = workdir / "outputs.txt", workdir / "summary.md"
    result = subprocess.run(
        ["make", "-C", str(REPO), "drift", f"OUTPUTS_OUT={outputs}", f"SUMMARY_OUT={summary}",
         "ARGS=--no-fail"], env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert outputs.read_text() == "drifted=true\n" and "drift detected" in summary.read_text()
    assert subprocess.run(["make", "-C", str(REPO), "drift"], env=env,
                          capture_output=True).returncode != 0  # exit 4 fails the target

    truth = pd.DataFrame({"request_id": [i for i, _ in ids], "target": 150.0})
    truth.to_csv(workdir / "truth.csv", index=False)
    result = subprocess.run(
        ["make", "-C", str(REPO), "collect", f"OUTCOMES={workdir / 'truth.csv'}",
         f"OUT={workdir / 'new.csv'}", f"ARGS=--base {DATA}"],
        env=env, capture_output=True, text=True,
    )
    # The shifted rows alone would break the contract's mean bands; added to the
    # training data they are a plausible new dataset version.
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(pd.read_csv(workdir / "new.csv")) == 442 + 300


def test_monitoring_with_no_log_location_ends_green_with_a_notice(workdir):
    """monitor.yml on a fresh fork: no SCORING_LOG_URI yet is a notice, not a daily red run."""
    import os
    import subprocess

    from tests.conftest import REPO

    env = {**os.environ, "MLOPS_SCORING_LOG_URI": "", "MLOPS_SCORING_LOG_DIR": "",
           "GITHUB_ACTIONS": "true"}
    outputs, summary = workdir / "outputs.txt", workdir / "summary.md"
    result = subprocess.run(
        ["make", "-C", str(REPO), "drift", f"OUTPUTS_OUT={outputs}", f"SUMMARY_OUT={summary}",
         "ARGS=--no-fail --missing-ok"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "::notice title=mlops::no scoring-log location is configured" in result.stdout
    assert outputs.read_text() == "drifted=false\n"
    assert "SCORING_LOG_URI" in summary.read_text()
    # Run by hand, a missing location is still a usage error.
    result = subprocess.run(["make", "-C", str(REPO), "drift"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "no scoring logs given" in result.stderr


def test_collect_skips_rows_whose_request_id_two_requests_used(registered, workdir):
    """A client-chosen X-Request-ID need not be unique: never guess whose outcome it is."""
    from ml_service.registry.export import export_bundle
    from ml_service.registry import connect

    registry = connect(model_settings())
    export_bundle(registry, registry.alias_version("champion"), workdir / "bundle", SPEC)
    log_dir = workdir / "scoring-log"
    app = create_app(Settings(bundle_dir=workdir / "bundle", scoring_log_dir=log_dir))
    rows = pd.read_csv(DATA)[NAMES].head(3).values.tolist()
    with TestClient(app) as client:
        for row, request_id in zip(rows, ["same", "same", "unique"]):
            client.post("/score", json={"data": [row]}, headers={"X-Request-ID": request_id})
    pd.DataFrame({"request_id": ["same", "unique"], "target": [100.0, 150.0]}).to_csv(
        workdir / "truth.csv", index=False)
    result = registered("collect", "--logs", str(log_dir), "--outcomes",
                        str(workdir / "truth.csv"), "--out", str(workdir / "new.csv"),
                        "--base", str(DATA))
    assert result.exit_code == 0, result.output
    assert "skipped 2 logged rows" in result.stdout
    collected = pd.read_csv(workdir / "new.csv")
    assert len(collected) == 442 + 1
    np.testing.assert_allclose(collected.iloc[-1][NAMES].values, rows[2])


def test_collect_keeps_only_rows_of_the_named_api_keys(registered, workdir):
    """Rows a stranger's key sent (crafted traffic) stay out of the next training set."""
    from ml_service.registry.export import export_bundle
    from ml_service.registry import connect
    from ml_service.serving.auth import key_id, new_key

    registry = connect(model_settings())
    export_bundle(registry, registry.alias_version("champion"), workdir / "bundle", SPEC)
    log_dir = workdir / "scoring-log"
    trusted, stranger = new_key(), new_key()
    app = create_app(Settings(bundle_dir=workdir / "bundle", scoring_log_dir=log_dir,
                              api_keys=f"{trusted},{stranger}"))
    rows = pd.read_csv(DATA)[NAMES].head(4).values.tolist()
    with TestClient(app) as client:
        for i, (row, key) in enumerate(zip(rows, [trusted, stranger, trusted, stranger])):
            client.post("/score", json={"data": [row]},
                        headers={"X-Request-ID": f"r{i}", "api-key": key})
    pd.DataFrame({"request_id": [f"r{i}" for i in range(4)],
                  "target": [100.0, 150.0, 120.0, 130.0]}).to_csv(workdir / "truth.csv",
                                                                  index=False)
    args = ["collect", "--logs", str(log_dir), "--outcomes", str(workdir / "truth.csv"),
            "--out", str(workdir / "new.csv"), "--base", str(DATA)]
    result = registered(*args, "--api-key", key_id(trusted))
    assert result.exit_code == 0, result.output
    assert "kept the 2 of 4 logged rows" in result.stdout
    collected = pd.read_csv(workdir / "new.csv")
    assert len(collected) == 442 + 2
    np.testing.assert_allclose(collected.iloc[442:][NAMES].values, [rows[0], rows[2]])
    result = registered(*args, "--api-key", "0123456789ab")
    assert result.exit_code == 2
    assert "no logged row was sent with API key id(s) 0123456789ab" in result.stderr
    assert key_id(trusted) in result.stderr and trusted not in result.stderr
    result = registered(*args, "--api-key", trusted)  # the key itself, pasted by mistake
    assert result.exit_code == 2 and "not keys" in result.stderr
    assert trusted not in result.stderr and trusted not in result.stdout

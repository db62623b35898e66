"""The whole pipeline through the CLI, on a temporary embedded MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import write_config, model_settings
from tests.data.make_fixtures import CASES

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"


def registry() -> tuple[MlflowClient, str]:
    settings = model_settings()
    uri = settings.resolved_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri), settings.model_name


def versions() -> list[int]:
    client, name = registry()
    return sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))


def champion() -> int:
    client, name = registry()
    return int(client.get_model_version_by_alias(name, "champion").version)


def test_first_run_registers_v1_as_champion_and_an_unchanged_rerun_is_cached(cli):
    result, summary = cli.run()
    assert result.exit_code == 0, result.output
    assert summary["registered"] is True and summary["version"] == 1
    assert summary["champion"] is None and summary["reason"].startswith("first model")
    assert set(summary["candidate"]) == {"rmse", "mse", "mae", "r2"}
    assert summary["run_id"]
    assert champion() == 1
    assert "registered version 1 as champion" in result.stdout

    result, summary = cli.run()
    assert result.exit_code == 0, result.output
    assert summary["registered"] is False and summary["version"] is None
    assert summary["cached_steps"] == ["validate", "split", "train", "evaluate"]
    assert "identical to registered version 1" in summary["reason"]
    assert summary["champion"] == pytest.approx(summary["candidate"])
    assert versions() == [1]
    assert "not registered" in result.stdout and "reused from cache" in result.stdout


def test_registered_version_carries_provenance_tags(cli):
    _, summary = cli.run()
    client, name = registry()
    version = client.get_model_version(name, "1")
    tags = version.tags
    assert tags["run_id"] == summary["run_id"] == version.run_id
    assert tags["dataset_digest"] == summary["dataset_digest"]
    assert {"git_commit", "fingerprint", "params", "gate.decision", "forced"} <= set(tags)
    assert float(tags["metric.rmse"]) == pytest.approx(summary["candidate"]["rmse"], rel=1e-5)
    assert tags["forced"] == "false"
    run = client.get_run(summary["run_id"])
    assert run.data.params["model.alpha"] == "1.0"
    assert run.data.metrics["rmse"] == pytest.approx(summary["candidate"]["rmse"])
    artifacts = {a.path for a in client.list_artifacts(summary["run_id"], "evaluation")}
    assert {"evaluation/predicted_vs_actual.png", "evaluation/residuals.png"} <= artifacts


def test_a_worse_config_is_not_registered_and_exits_zero(cli, workdir):
    cli.run()
    result, summary = cli.run("--config", str(write_config(workdir, alpha=100000.0)))
    assert result.exit_code == 0, result.output
    assert summary["registered"] is False
    assert "quality floor" in summary["reason"]
    assert summary["champion"]["rmse"] < summary["candidate"]["rmse"]
    assert versions() == [1] and champion() == 1


def test_a_config_better_by_the_margin_is_registered_and_takes_champion(cli, workdir):
    result, summary = cli.run("--config", str(write_config(workdir, "weak.yaml", alpha=1000.0)))
    assert summary["registered"] is True, result.output
    result, summary = cli.run()
    assert result.exit_code == 0, result.output
    assert summary["registered"] is True and summary["version"] == 2
    assert "better than the champion v1" in summary["reason"]
    assert summary["candidate"]["rmse"] < summary["champion"]["rmse"] * 0.99
    assert champion() == 2
    # Better beyond noise: the whole paired-bootstrap interval is an improvement.
    improvement = summary["improvement"]
    assert 0 < improvement["low"] < improvement["point"] < improvement["high"]
    assert f"{improvement['low']:+.2%}" in summary["reason"] and "95% CI" in summary["reason"]
    client, name = registry()
    assert json.loads(client.get_model_version(name, "2").tags["gate.improvement"]) == improvement
    run = client.get_run(summary["run_id"])
    assert run.data.metrics["improvement_low"] == pytest.approx(improvement["low"])
    groups = {(s["slice"], s["group"]) for s in summary["slices"]}
    assert groups == {("sex", "1"), ("sex", "2"), ("age", "<40"), ("age", "40-60"),
                      ("age", ">=60")}
    sex1 = next(s for s in summary["slices"] if s["group"] == "1")
    assert run.data.metrics["slice.sex.1.rmse"] == pytest.approx(sex1["candidate"])
    assert run.data.metrics["champion_slice.sex.1.rmse"] == pytest.approx(sex1["champion"])


def test_a_candidate_better_only_by_noise_is_not_registered(cli, workdir):
    # alpha=300 as champion, then alpha=1: about 2% lower RMSE on the 80-row
    # holdout, past the 1% margin, but the interval spans zero.
    cli.run("--config", str(write_config(workdir, "champion.yaml", alpha=300.0)))
    result, summary = cli.run()
    assert result.exit_code == 0, result.output
    improvement = summary["improvement"]
    assert improvement["point"] > 0.01 and improvement["low"] < 0 < improvement["high"]
    assert summary["registered"] is False and versions() == [1]
    assert summary["reason"].startswith("not better than the champion v1 beyond noise")
    assert "is not above +0.00%" in summary["reason"]
    assert "95% CI" in result.stdout and "rmse by slice" in result.stdout


def test_force_registers_a_rejected_candidate_and_tags_it(cli, workdir):
    cli.run()
    worse = str(write_config(workdir, alpha=300.0))
    _, summary = cli.run("--config", worse)
    assert summary["registered"] is False and "not better" in summary["reason"]

    result, summary = cli.run("--config", worse, "--force")
    assert result.exit_code == 0, result.output
    assert summary["registered"] is True and summary["forced"] is True
    client, name = registry()
    assert client.get_model_version(name, "2").tags["forced"] == "true"
    assert champion() == 2
    assert "(forced)" in result.stdout


def test_evaluate_reports_the_gate_decision_without_registering(cli):
    result = cli("evaluate")
    assert result.exit_code == 0, result.output
    assert "would register" in result.stdout
    assert versions() == []


def test_train_saves_a_fitted_model_without_touching_the_registry(cli, workdir):
    import joblib

    result = cli("train", "--out", str(workdir / "m.joblib"))
    assert result.exit_code == 0, result.output
    model = joblib.load(workdir / "m.joblib")
    assert hasattr(model, "predict") and "rmse" in result.stdout
    assert not (workdir / ".mlflow").exists()


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_data_exits_3_names_the_expectation_and_changes_nothing(cli, workdir, name):
    cli.run()
    runs_before = _run_count()
    _, expectation, column = CASES[name]
    result, summary = cli.run("--data", str(FIXTURES / f"{name}.csv"))
    assert result.exit_code == 3, result.output
    assert summary is None
    assert expectation in result.stderr
    if column:
        assert f"column '{column}'" in result.stderr
    assert "Traceback" not in result.output
    assert versions() == [1] and champion() == 1 and _run_count() == runs_before
    assert (workdir / "reports" / "validation.json").exists()


def _run_count() -> int:
    client, _ = registry()
    experiment = client.get_experiment_by_name(model_settings().experiment_name)
    return len(client.search_runs([experiment.experiment_id]))


def test_validate_alone_passes_good_data_and_fails_bad_data_with_exit_3(cli):
    assert cli("validate").exit_code == 0
    result = cli("validate", "--data", str(FIXTURES / "shifted_distribution.csv"))
    assert result.exit_code == 3
    assert "expect_column_mean_to_be_between failed on column 'bmi'" in result.stderr


def test_status_lists_versions_with_aliases(cli, workdir):
    assert "no versions" in cli("status").stdout
    cli.run()
    result = cli("status", "--json-out", str(workdir / "status.json"))
    assert result.exit_code == 0, result.output
    assert "champion" in result.stdout
    import json

    status = json.loads((workdir / "status.json").read_text())
    assert status["versions"][0]["version"] == 1
    assert status["versions"][0]["aliases"] == ["champion"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "--data", "missing.csv"], "data file not found: missing.csv"),
        (["run", "--config", "missing.yaml"], "config file not found"),
        (["run", "--bogus"], "No such option"),
    ],
)
def test_usage_errors_exit_2_with_one_message(cli, args, message):
    result = cli(*args)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


def test_unknown_model_parameter_is_a_usage_error(cli, workdir):
    result = cli("run", "--config", str(write_config(workdir, alpah=1.0)))
    assert result.exit_code == 2
    assert "invalid model parameters" in result.stderr


def test_an_unreachable_tracking_server_fails_fast_with_a_clear_message(cli, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    result = cli("run")
    assert result.exit_code == 1
    assert "cannot reach the MLflow tracking server at http://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.output


def test_an_unreadable_csv_is_a_data_error(cli, workdir):
    (workdir / "binary.csv").write_bytes(b"\xff\xfe\x00garbage")
    result = cli("validate", "--data", str(workdir / "binary.csv"))
    assert result.exit_code == 3
    assert "not a readable CSV" in result.stderr


def test_a_candidate_worse_on_one_slice_is_refused_when_a_tolerance_is_set(cli, workdir):
    import yaml

    def config(name: str, alpha: float) -> str:
        path = write_config(workdir, name, alpha=alpha)
        raw = yaml.safe_load(path.read_text())
        raw["gate"].update(margin=0.0, improvement={"min_lower_bound": None},
                           slices={"tolerance": 0.005, "min_rows": 20})
        path.write_text(yaml.safe_dump(raw))
        return str(path)

    cli.run("--config", config("champion.yaml", 0.1))
    # alpha=1 is as good overall (+0.02%) but 0.6% worse for the 42 rows of sex=1.
    result, summary = cli.run("--config", config("candidate.yaml", 1.0))
    assert result.exit_code == 0, result.output
    assert summary["registered"] is False and versions() == [1]
    assert "worse than the champion v1 on a slice beyond the tolerance 0.50%" in summary["reason"]
    assert "sex=1 (42 rows)" in summary["reason"]

from pathlib import Path

import pytest

from ml_service.settings import Settings


def test_without_a_tracking_uri_the_embedded_sqlite_store_is_used(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings(store_dir=Path("store"))
    assert settings.embedded
    assert settings.resolved_tracking_uri == f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    assert settings.artifact_location == (tmp_path / "store" / "artifacts").as_uri()


def test_mlflow_tracking_uri_from_the_environment_selects_a_server(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    settings = Settings()
    assert not settings.embedded
    assert settings.resolved_tracking_uri == "http://mlflow.example:5000"
    assert settings.artifact_location is None  # the server decides


def test_mlops_prefixed_variables_and_dotenv_are_read(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLOPS_MODEL_NAME", raising=False)
    (tmp_path / ".env").write_text("MLOPS_MODEL_NAME=from-dotenv\n")
    monkeypatch.setenv("MLOPS_EXPERIMENT_NAME", "from-env")
    settings = Settings()
    assert settings.model_name == "from-dotenv"
    assert settings.experiment_name == "from-env"


def test_the_attestations_source_ref_defaults_to_main_and_must_be_a_ref(monkeypatch, tmp_path):
    import pytest
    from pydantic import ValidationError

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLOPS_SOURCE_REF", raising=False)
    assert Settings().source_ref == "refs/heads/main"
    monkeypatch.setenv("MLOPS_SOURCE_REF", "")  # an unset workflow variable
    assert Settings().source_ref == "refs/heads/main"
    monkeypatch.setenv("MLOPS_SOURCE_REF", "refs/heads/release")
    assert Settings().source_ref == "refs/heads/release"
    monkeypatch.setenv("MLOPS_SOURCE_REF", "main")
    with pytest.raises(ValidationError):
        Settings()


def test_drift_on_a_kubernetes_stage_reads_the_shipped_log(tmp_path):
    from ml_service.errors import UsageError
    from ml_service.monitoring.logs import stage_logs

    cluster = Settings(deploy_target="kubernetes")
    with pytest.raises(UsageError, match="set MLOPS_SCORING_LOG_URI"):
        stage_logs(cluster, "production", None, tmp_path)
    shipped = Settings(deploy_target="kubernetes", scoring_log_uri="az://logs/production")
    assert stage_logs(shipped, "production", None, tmp_path) == "az://logs/production"
    with pytest.raises(UsageError, match="give one"):
        stage_logs(shipped, "qa", "logs/", tmp_path)
    with pytest.raises(UsageError, match="qa or production"):
        stage_logs(shipped, "staging", None, tmp_path)

"""Runtime settings, read once from the environment (or ``.env``) in the entry point.

ML parameters live in the model package's ``config.yaml`` instead, so that a
retrain is reproducible from git; these are the values that differ between a
laptop, CI and production.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

import diabetes_regression

DEFAULT_CONFIG = Path(diabetes_regression.__file__).with_name("config.yaml")


class Settings(BaseSettings):
    """Where things are and what they are called.

    Every field can be set as an environment variable with the ``MLOPS_`` prefix
    (``MLOPS_MODEL_NAME``), except the tracking URI, which uses MLflow's own
    ``MLFLOW_TRACKING_URI`` so that existing MLflow setups just work.
    """

    model_config = SettingsConfigDict(env_prefix="MLOPS_", env_file=".env", extra="ignore")

    tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "MLOPS_TRACKING_URI"),
        description="MLflow tracking/registry URI; unset means the embedded SQLite store.",
    )
    store_dir: Path = Field(
        default=Path(".mlflow"),
        description="Directory of the embedded store (SQLite database and artifacts).",
    )
    model_name: str = Field(default="diabetes-ridge", description="Registered model name.")
    experiment_name: str = Field(default="diabetes-ridge", description="MLflow experiment.")
    data_path: Path = Field(default=Path("data/diabetes.csv"), description="Training data.")
    config_path: Path = Field(default=DEFAULT_CONFIG, description="ML parameters (YAML).")
    cache_dir: Path = Field(default=Path(".cache/pipeline"), description="Step cache.")
    reports_dir: Path = Field(default=Path("reports"), description="Validation reports.")
    server_timeout: float = Field(
        default=10.0, description="Seconds to wait for a remote tracking server to answer."
    )

    # Scoring service
    bundle_dir: Path = Field(
        default=Path("build/bundle"), description="Model bundle the scoring service loads."
    )
    model_sha256: str | None = Field(
        default=None, description="Expected SHA-256 of the bundled model file (image builds)."
    )
    serve_host: str = Field(default="127.0.0.1", description="Scoring service bind address.")
    serve_port: int = Field(default=8080, ge=1, le=65535, description="Scoring service port.")
    max_rows: int = Field(default=10_000, ge=1, description="Most rows in one /score request.")
    max_body_bytes: int = Field(
        default=5_000_000, ge=1024, description="Largest /score request body, in bytes."
    )

    scoring_log_dir: Path | None = Field(
        default=None, description="Directory of the scoring log (JSON lines); unset = off."
    )
    scoring_log_max_bytes: int = Field(
        default=64 * 2**20, ge=4096, description="Rotate scoring log files at this size."
    )
    scoring_log_max_pending: int = Field(
        default=2000, ge=1, description="Requests queued for the log before 503 back-pressure."
    )

    # Image and release
    image_name: str = Field(default="diabetes-ridge-scoring", description="Scoring image name.")
    image_registry: str | None = Field(
        default=None, description="Registry path images are pushed to, e.g. ghcr.io/owner."
    )
    base_image: str = Field(default="python:3.11-slim", description="Scoring image base.")
    image_python: str = Field(default="3.11", description="Python version of the base image.")
    build_dir: Path = Field(default=Path("build"), description="Image contexts and wheels.")
    qa_port: int = Field(default=8081, ge=1, le=65535, description="Host port of QA.")
    production_port: int = Field(default=8080, ge=1, le=65535, description="Host port of prod.")
    smoke_deadline: float = Field(
        default=90.0, gt=0, description="Seconds a new container has to become healthy."
    )

    @field_validator("tracking_uri", "scoring_log_dir", "model_sha256", "image_registry",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, value):
        # Workflows pass unset secrets and variables as empty strings.
        return None if value == "" else value

    @property
    def embedded(self) -> bool:
        """True when no tracking URI is set and the embedded store is used."""
        return not self.tracking_uri

    @property
    def resolved_tracking_uri(self) -> str:
        """The tracking URI in effect: the configured one or the embedded store's."""
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.store_dir / 'mlflow.db').resolve()}"

    @property
    def artifact_location(self) -> str | None:
        """Artifact root for new experiments; None lets a tracking server decide."""
        if self.embedded:
            return (self.store_dir / "artifacts").resolve().as_uri()
        return None

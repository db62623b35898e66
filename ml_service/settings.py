"""Runtime settings, read once from the environment (or ``.env``) in the entry point.

ML parameters live in the model package's ``config.yaml`` instead, so that a
retrain is reproducible from git; these are the values that differ between a
laptop, CI and production.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from typing import TYPE_CHECKING, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from ml_service.spec import ModelSpec

# The official image's multi-platform index for python:3.11-slim, pinned so a
# rebuild gets the same base; update tag and digest together (MLOPS_BASE_IMAGE
# overrides it, e.g. with the air-gapped image of infra/base-image/build.sh).
# The manifests of the Kubernetes target (kustomize base and overlays).
KUBERNETES = Path(__file__).resolve().parents[1] / "infra" / "kubernetes"
BASE_IMAGE = (
    "python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7"
)


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
    model: str | None = Field(
        default=None, description="Which installed model (entry point of group mlops.models) "
        "to use; unset = the only one installed.",
    )
    model_name: str = Field(
        default="", description="Registered model name; default: the spec's name.")
    experiment_name: str = Field(
        default="", description="MLflow experiment; default: the registered model name.")
    data_path: Path | None = Field(
        default=None, description="Training data CSV; default: the spec's data_path.")
    config_path: Path | None = Field(
        default=None, description="ML parameters (YAML); default: the spec's config file.")
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
    model_runtime: Literal["auto", "onnx", "sklearn"] = Field(
        default="auto",
        description="What runs the model: auto = the bundle's ONNX form when it has one, "
                    "else scikit-learn.")
    serve_host: str = Field(default="127.0.0.1", description="Scoring service bind address.")
    serve_port: int = Field(default=8080, ge=1, le=65535, description="Scoring service port.")
    max_rows: int = Field(default=10_000, ge=1, description="Most rows in one /score request.")
    model_cache_size: int = Field(
        default=1_000, ge=1,
        description="Many-models sets: partition models the service holds (LRU).")
    max_body_bytes: int = Field(
        default=0, ge=0,
        description="Largest /score request body, in bytes; 0 = 512 bytes per allowed row.",
    )
    max_concurrent_scoring: int = Field(
        default=4, ge=1, description="Requests parsed and scored at once; the rest wait."
    )
    request_timeout: float = Field(
        default=30.0, gt=0,
        description="Seconds a client has to send a whole request (headers and body).",
    )
    keep_alive_timeout: float = Field(
        default=5.0, gt=0, description="Seconds an idle kept-alive connection stays open."
    )
    # Keys of the scoring endpoint (ml_service/serving/auth.py): a client sends one as
    # `Authorization: Bearer <key>` or `api-key: <key>`.
    api_keys: SecretStr | None = Field(
        default=None, description="Keys /score accepts, separated by commas or new lines "
        "(two at once while rotating). For a release: the keys the stages get.")
    api_keys_file: Path | None = Field(
        default=None, description="A file of /score keys, one per line (a mounted Kubernetes "
        "Secret); re-read within a second of a change, so keys rotate without a restart.")
    metrics_keys: SecretStr | None = Field(
        default=None, description="Keys /metrics accepts; unset = /metrics is open.")
    metrics_keys_file: Path | None = Field(
        default=None, description="A file of /metrics keys, one per line.")
    anonymous_scoring: bool = Field(
        default=False, description="Serve /score without keys on a non-loopback address "
        "(refused by default: anyone who reaches the port could fill the scoring log).")

    drain_file: Path | None = Field(
        default=None, description="Once this file exists, every answer closes its connection "
        "(a pod being stopped: the preStop hook creates it)."
    )
    shadow_file: Path | None = Field(
        default=None, description="A JSON file naming a shadow to mirror /score requests to "
        "(url, fraction, version, tolerance); re-read when it changes; absent = no shadow.")
    scoring_log_dir: Path | None = Field(
        default=None, description="Directory of the scoring log (JSON lines); unset = off."
    )
    scoring_log_max_bytes: int = Field(
        default=64 * 2**20, ge=4096, description="Rotate scoring log files at this size."
    )
    scoring_log_max_pending: int = Field(
        default=2000, ge=1, description="Requests queued for the log before 503 back-pressure."
    )
    scoring_log_max_total_bytes: int = Field(
        default=2**30, ge=8192,
        description="Most bytes of scoring log kept on the volume; the oldest files go first.",
    )
    scoring_log_uri: str | None = Field(
        default=None,
        description="Object storage (fsspec URI, e.g. az://container/prefix) that the service "
        "ships closed log files to, and that drift and collect read; unset = local files only.",
    )
    scoring_log_credentials: list[str] = Field(
        default=["AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_NAME",
                 "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN"],
        description="Environment variables handed to the stage containers with "
        "MLOPS_SCORING_LOG_URI, so they can write to the storage.",
    )
    scoring_log_rotate_seconds: float = Field(
        default=3600.0, gt=0,
        description="Close (and ship) a log file at least this often, even under light traffic.",
    )

    # Image and release
    image_name: str = Field(
        default="", description="Scoring image name; default: <model name>-scoring.")
    image_registry: str | None = Field(
        default=None, description="Registry path images are pushed to, e.g. ghcr.io/owner."
    )
    source_ref: str = Field(
        default="refs/heads/main", pattern=r"^refs/\S+$",
        description="Git ref the release workflow must have run on for `mlops "
        "verify-attestation` to accept its attestations (gh --source-ref).",
    )
    hosted_builds: bool = Field(
        default=True,
        description="The release workflow builds and signs on GitHub-hosted runners (its qa "
        "and attest jobs run on ubuntu-latest): `mlops verify-attestation` refuses "
        "attestations made on a self-hosted runner (gh --deny-self-hosted-runners). Set "
        "false if those jobs move to self-hosted runners.",
    )
    base_image: str = Field(
        default=BASE_IMAGE,
        description="Scoring image base, pinned by digest; pulled when the engine lacks it.",
    )
    image_python: str = Field(default="3.11", description="Python version of the base image.")
    build_dir: Path = Field(default=Path("build"), description="Image contexts and wheels.")
    qa_port: int = Field(default=8081, ge=1, le=65535, description="Host port of QA.")
    production_port: int = Field(default=8080, ge=1, le=65535, description="Host port of prod.")
    container_memory: str = Field(
        default="1g", description="Memory limit of each stage container (Docker syntax)."
    )
    container_pids: int = Field(default=256, ge=16, description="Process limit per container.")
    smoke_deadline: float = Field(
        default=90.0, gt=0, description="Seconds a new container has to become healthy."
    )

    # Where QA and production run: containers on a Docker engine, or
    # Deployments on a Kubernetes cluster (kubectl, the kubeconfig's contexts).
    deploy_target: Literal["docker", "kubernetes"] = Field(
        default="docker", description="docker (a Docker engine) or kubernetes (a cluster).")
    kubectl: str = Field(default="kubectl", description="The kubectl to run.")
    kube_context_qa: str | None = Field(
        default=None, description="kubeconfig context of QA; unset = the current context.")
    kube_context_production: str | None = Field(
        default=None, description="kubeconfig context of production; unset = the current one.")
    kube_namespace_qa: str = Field(default="mlops-qa", description="Namespace of QA.")
    kube_namespace_production: str = Field(
        default="mlops-production", description="Namespace of production.")
    kube_overlay_qa: Path = Field(
        default=KUBERNETES / "overlays" / "qa", description="kustomize overlay of QA.")
    kube_overlay_production: Path = Field(
        default=KUBERNETES / "overlays" / "production",
        description="kustomize overlay of production.")
    rollout_deadline: float = Field(
        default=180.0, gt=0, description="Seconds a rollout has to become ready before undo.")
    kube_config_data: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("KUBE_CONFIG_DATA"),
        description="A kubeconfig (text or base64) that `mlops kubeconfig` installs.")
    # Canary promotion on Kubernetes (ml_service/release/canary.py): traffic in
    # steps, each judged against the stable version by Prometheus.
    canary_steps: str = Field(
        default="", description="Shares of traffic (percent) the new version gets in turn "
        "before all of it, e.g. '10,50'; empty = one rolling update.")
    canary_step_seconds: float = Field(
        default=60.0, gt=0, description="How long each canary step serves before it is "
        "judged (the analysis window).")
    prometheus_url: str | None = Field(
        default=None, description="The Prometheus that scrapes the pods (canary analysis).")
    canary_min_requests: int = Field(
        default=50, ge=0, description="Fewest /score requests the canary must answer in a "
        "step for a verdict; fewer aborts.")
    canary_max_error_rate: float = Field(
        default=0.01, ge=0, description="Most server errors (5xx) per request the canary may "
        "answer beyond the stable version's.")
    canary_max_p99_ratio: float = Field(
        default=1.5, ge=1, description="Most the canary's p99 latency may be, as a multiple of "
        "the stable version's (beyond MLOPS_CANARY_P99_SLACK).")
    canary_p99_slack: float = Field(
        default=0.025, ge=0, description="Seconds of p99 the canary may add in any case (the "
        "latency histogram's buckets are coarse).")
    canary_max_psi: float = Field(
        default=0.25, gt=0, description="Most population stability index between the canary's "
        "and the stable version's predictions.")
    # Shadow releases on Kubernetes (ml_service/release/shadow.py).
    shadow_fraction: float = Field(
        default=1.0, gt=0, le=1, description="Share of production's /score requests copied "
        "to a shadow.")
    shadow_tolerance: float | None = Field(
        default=None, ge=0, description="Rows whose shadow and production predictions differ "
        "by at most this agree; default: 5% of the model's prediction range.")
    shadow_window: float = Field(
        default=300.0, gt=0, description="Seconds of live traffic a shadow report looks at.")
    shadow_min_requests: int = Field(
        default=100, ge=0, description="Fewest copies the shadow must have answered in the "
        "window for a verdict.")
    shadow_min_agreement: float = Field(
        default=0.9, ge=0, le=1, description="Least share of rows the shadow must agree on.")
    require_shadow: bool = Field(
        default=False, description="Promote only a version whose last shadow report passed.")
    registry_username: str | None = Field(
        default=None, description="User of MLOPS_IMAGE_REGISTRY for the cluster's pull secret.")
    registry_password: SecretStr | None = Field(
        default=None, description="Token of MLOPS_IMAGE_REGISTRY for the cluster's pull secret.")

    # Where the containers run. The Docker SDK reads DOCKER_HOST itself; it is
    # read here too, to know whether the engine is this machine or a lasting host.
    docker_host: str | None = Field(
        default=None, validation_alias=AliasChoices("DOCKER_HOST"),
        description="Docker engine (unix:// local, ssh://user@host or tcp://host:port remote).",
    )
    engine_address: str | None = Field(
        default=None,
        description="Address the containers' ports are reached at for smoke tests; "
        "default: the DOCKER_HOST's host, or 127.0.0.1 for a local engine.",
    )
    publish_address: str | None = Field(
        default=None,
        description="Host address the containers publish their port on; default 127.0.0.1 "
        "on a local engine, 0.0.0.0 on a remote one (so its smoke test can reach it).",
    )
    docker_ssh_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DOCKER_SSH_KEY"),
        description="Private key for an ssh:// DOCKER_HOST (installed by `mlops remote-engine`).",
    )
    docker_ssh_known_hosts: str | None = Field(
        default=None, validation_alias=AliasChoices("DOCKER_SSH_KNOWN_HOSTS"),
        description="known_hosts line(s) of the ssh:// DOCKER_HOST's host.",
    )
    # Signed models (ml_service/signing.py): the key that signs, the keys trusted.
    signing_key: SecretStr | None = Field(
        default=None, description="The pipeline's ECDSA private key (PEM text, e.g. a secret) "
        "that signs registered models and bundles.")
    signing_key_file: Path | None = Field(
        default=None, description="The signing key as a file; default (outside Actions): "
        "~/.config/mlops-template/signing-key.pem, made on first use.")
    signing_trusted: Path | None = Field(
        default=None, description="Folder of the trusted public keys (*.pub); default: the "
        "repository's infra/signing/trusted (the image's copy in a container).")
    runner_environment: str | None = Field(
        default=None, validation_alias=AliasChoices("RUNNER_ENVIRONMENT"),
        description="Set by GitHub Actions: github-hosted or self-hosted.",
    )

    @field_validator("model", "data_path", "config_path", "tracking_uri", "scoring_log_dir",
                     "drain_file", "prometheus_url", "shadow_file", "shadow_tolerance",
                     "model_sha256", "image_registry", "scoring_log_uri", "docker_host",
                     "engine_address", "publish_address", "runner_environment",
                     "kube_context_qa", "kube_context_production", "kube_config_data",
                     "registry_username", "registry_password",
                     "docker_ssh_key", "docker_ssh_known_hosts",
                     "signing_key", "signing_key_file", "signing_trusted",
                     "api_keys", "api_keys_file", "metrics_keys", "metrics_keys_file",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # Workflows pass unset secrets and variables as empty strings.
        return None if value == "" else value

    @field_validator("source_ref", mode="before")
    @classmethod
    def _empty_is_the_default_branch(cls, value: Any) -> Any:
        return "refs/heads/main" if value == "" else value

    @model_validator(mode="after")
    def _body_limit_follows_the_row_limit(self) -> Settings:
        if not self.max_body_bytes:
            self.max_body_bytes = 512 * self.max_rows
        return self

    def for_model(self, spec: ModelSpec) -> Settings:
        """These settings with the model's defaults filled in from its spec."""
        name = self.model_name or spec.name
        return self.model_copy(update={
            "model_name": name,
            "experiment_name": self.experiment_name or name,
            "image_name": self.image_name or f"{name}-scoring",
            "data_path": self.data_path or spec.data_path,
            "config_path": self.config_path or spec.config_path,
        })

    @property
    def data_file(self) -> Path:
        """The training dataset (after :meth:`for_model`)."""
        if self.data_path is None:
            raise RuntimeError("settings were not resolved for a model (for_model)")
        return self.data_path

    @property
    def config_file(self) -> Path:
        """The ML parameters file (after :meth:`for_model`)."""
        if self.config_path is None:
            raise RuntimeError("settings were not resolved for a model (for_model)")
        return self.config_path

    @property
    def remote_engine(self) -> bool:
        """True when DOCKER_HOST names an engine on another host (ssh:// or tcp://)."""
        return bool(self.docker_host) and urlsplit(self.docker_host).scheme in (
            "ssh", "tcp", "http", "https")

    @property
    def engine_host(self) -> str:
        """The address a stage's published port is reached at."""
        if self.engine_address:
            return self.engine_address
        if self.remote_engine:
            return urlsplit(str(self.docker_host)).hostname or "127.0.0.1"
        return "127.0.0.1"

    @property
    def bind_address(self) -> str:
        """The host address containers publish their port on."""
        if self.publish_address:
            return self.publish_address
        return "0.0.0.0" if self.remote_engine else "127.0.0.1"

    @property
    def embedded(self) -> bool:
        """True when no tracking URI is set and the embedded store is used."""
        return not self.tracking_uri

    @property
    def shown_tracking_uri(self) -> str:
        """The tracking URI as it may be printed: credentials replaced by ``***``."""
        from ml_service.redact import redact_uri

        return redact_uri(self.resolved_tracking_uri)

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

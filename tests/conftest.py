"""Shared fixtures: an isolated MLflow store and cache per test, and a CLI runner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "diabetes.csv"
DEFAULT_CONFIG = REPO / "src" / "diabetes_regression" / "config.yaml"


#: The MLOPS_* variables the tests take from the caller: how to reach the
#: engines they need. Any other (MLOPS_MODEL, MLOPS_MODEL_NAME, a developer's
#: MLOPS_API_KEYS, ...) is dropped so that the tests run the same in any shell.
CALLERS_SETTINGS = {"MLOPS_BASE_IMAGE", "MLOPS_CACHE_HOME", "MLOPS_RUN_WORKFLOWS"}
#: Set by pytest_configure for the whole session (and inherited by xdist workers).
SESSION_SETTINGS = {"MLOPS_TEST_SIGNING_ROOT", "MLOPS_SIGNING_KEY_FILE", "MLOPS_SIGNING_TRUSTED"}


def pytest_configure(config):
    """The caller's settings kept out; one signing key for the session, and it alone trusted.

    Every registration signs with the session's key and every loader verifies
    against it; the repository's own trusted keys and a developer's key stay
    out of the tests.
    """
    import tempfile

    from ml_service import signing

    for name in list(os.environ):
        if name.startswith("MLOPS_") and name not in CALLERS_SETTINGS | SESSION_SETTINGS:
            del os.environ[name]
    if os.environ.get("MLOPS_TEST_SIGNING_ROOT"):  # set once: xdist workers inherit it
        return
    root = Path(tempfile.mkdtemp(prefix="mlops-test-signing-"))
    private, public = signing.new_key_pair()
    signing.write_private(root / "key.pem", private)
    (root / "trusted").mkdir()
    (root / "trusted" / "tests.pub").write_bytes(public)
    os.environ.pop("MLOPS_SIGNING_KEY", None)
    os.environ.update({"MLOPS_TEST_SIGNING_ROOT": str(root),
                       "MLOPS_SIGNING_KEY_FILE": str(root / "key.pem"),
                       "MLOPS_SIGNING_TRUSTED": str(root / "trusted")})


def sign(directory: Path) -> Path:
    """Sign ``directory`` (a bundle) with the session's key, as an export would."""
    from ml_service.signing import Signer

    Signer(None, Path(os.environ["MLOPS_SIGNING_KEY_FILE"])).sign(directory)
    return directory


def model_settings(spec=None, **values):
    """Settings from the environment (plus ``values``), resolved for ``spec`` (diabetes)."""
    from diabetes_regression.spec import SPEC
    from ml_service.settings import Settings

    return Settings(**values).for_model(spec or SPEC)


def fit(frame: pd.DataFrame, params: dict, spec=None):
    """The spec's estimator (default: diabetes) fitted on ``frame``."""
    from diabetes_regression.spec import SPEC

    spec = spec or SPEC
    model = spec.build_estimator(params)
    return model.fit(frame[spec.contract.feature_names], frame[spec.contract.target.name])


def write_bundle(directory: Path, model, spec=None, runtime: str = "onnx",
                 **metadata) -> Path:
    """A bundle made straight from a fitted model, as `mlops bundle` would write it.

    ``runtime="onnx"`` adds the model's checked ONNX form (as `mlops bundle`
    does), ``"sklearn"`` leaves the bundle on scikit-learn.
    """
    import numpy as np
    import skops.io

    from diabetes_regression.spec import SPEC
    from ml_service.bundle import MODEL_FILE, ONNX_FILE, BundleMetadata, sha256_file
    from ml_service.registry.compiled import compile_model

    spec = spec or SPEC
    skops.io.dump(model, directory / MODEL_FILE)
    served = {"kind": "sklearn", "reason": "written without an ONNX form"}
    if runtime == "onnx":
        payload, served = compile_model(model, spec.output, np.asarray(spec.example, float),
                                        "the spec's example rows")
        assert payload is not None, served
        (directory / ONNX_FILE).write_bytes(payload)
        served["sha256"] = sha256_file(directory / ONNX_FILE)
    BundleMetadata(
        **{"name": spec.name, "version": 1, **metadata},
        sha256=sha256_file(directory / MODEL_FILE),
        feature_names=spec.contract.feature_names, contract=spec.contract.to_json(),
        output=spec.output, prediction_range=list(spec.prediction_range),
        example=[list(row) for row in spec.example], runtime=served,
    ).write(directory)
    return sign(directory)


@pytest.fixture
def diabetes() -> pd.DataFrame:
    """The example dataset as read from data/diabetes.csv."""
    return pd.read_csv(DATA)


def isolated_env(root: Path) -> dict[str, str]:
    """Environment that sends the store, cache and reports under ``root``.

    An empty MLFLOW_TRACKING_URI selects the embedded store even when a
    developer's shell or .env names a server. Every test that runs the
    pipeline (in-process, through make, or in a container) starts from this.
    """
    return {
        "MLFLOW_TRACKING_URI": "",
        "MLOPS_STORE_DIR": str(root / ".mlflow"),
        "MLOPS_CACHE_DIR": str(root / "cache"),
        "MLOPS_REPORTS_DIR": str(root / "reports"),
    }


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory with its own embedded store, cache and reports.

    The developer's MLFLOW_TRACKING_URI and .env are kept out of the test.
    """
    monkeypatch.chdir(tmp_path)
    for name in ("MLOPS_TRACKING_URI", "MLOPS_CONFIG_PATH", "MLOPS_MODEL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in isolated_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # in-process, unset rather than empty
    # Outside the repository no pyproject.toml names the default model, and
    # several are installed (diabetes, sales): choose the worked example.
    monkeypatch.setenv("MLOPS_MODEL", "diabetes")
    monkeypatch.setenv("MLOPS_DATA_PATH", str(DATA))
    return tmp_path


def write_config(directory: Path, name: str = "config.yaml", **model) -> Path:
    """Write a copy of the default config with ``model`` params overridden."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config["model"].update(model)
    path = directory / name
    path.write_text(yaml.safe_dump(config))
    return path


class Cli:
    """Runs ``mlops`` in-process and reads its --json-out file."""

    def __init__(self, directory: Path):
        from ml_service.cli import app

        self.app = app
        self.directory = directory
        self.runner = CliRunner()

    def __call__(self, *args: str):
        return self.runner.invoke(self.app, list(args))

    def run(self, *args: str) -> tuple[object, dict | None]:
        """``mlops run *args --json-out``; returns (click result, parsed JSON or None)."""
        out = self.directory / "result.json"
        out.unlink(missing_ok=True)
        result = self("run", *args, "--json-out", str(out))
        return result, json.loads(out.read_text()) if out.exists() else None


@pytest.fixture
def cli(workdir: Path) -> Cli:
    """The mlops CLI bound to the isolated ``workdir``."""
    return Cli(workdir)


@pytest.fixture(scope="session")
def team_server(tmp_path_factory):
    """Team mode: `mlflow server` backed by a real PostgreSQL, for the whole session.

    Skips when PostgreSQL is not installed, unless REQUIRE_POSTGRES=1 (as in CI).
    """
    from tests.servers import MlflowServer, Postgres

    root = tmp_path_factory.mktemp("team")
    postgres = Postgres()
    try:
        server = MlflowServer(root, postgres.create_database("mlflow"))
        yield server.uri
        server.close()
    finally:
        postgres.stop()


CANCER_PACKAGE = REPO / "tests" / "models" / "cancer_classifier"
TREE_PACKAGE = REPO / "tests" / "models" / "tree_models"


@pytest.fixture(scope="session")
def second_model(tmp_path_factory) -> Path:
    """The test model packages, installed into a directory of their own.

    The cancer classifier (entry point ``cancer``) and the tree ensembles
    (``cancer-hgb``, ``diabetes-forest``, ``wine-hgb``). A real install (uv builds their
    wheels and writes their entry points), but kept out of the project's
    environment: only tests that put the directory on their path (and set
    MLOPS_MODEL) see these models.
    """
    import subprocess
    import sys

    target = tmp_path_factory.mktemp("second-model")
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([str(uv), "pip", "install", "--quiet", "--no-deps", "--python",
                    sys.executable, "--target", str(target), str(CANCER_PACKAGE),
                    str(TREE_PACKAGE)],
                   check=True, capture_output=True, timeout=300)
    return target


@pytest.fixture
def cancer(second_model: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``workdir`` with the classifier installed beside diabetes and chosen by MLOPS_MODEL."""
    monkeypatch.syspath_prepend(str(second_model))
    monkeypatch.setenv("PYTHONPATH", str(second_model))
    monkeypatch.setenv("MLOPS_MODEL", "cancer")
    monkeypatch.delenv("MLOPS_DATA_PATH", raising=False)
    return workdir


# The workflows under act (tests/act) run with `make workflows`, not with the
# rest of the suite: they execute whole jobs and need Docker, a registry and
# the local cluster prepared by .ci/run.
collect_ignore = [] if os.environ.get("MLOPS_RUN_WORKFLOWS") == "1" else ["act"]

"""Where a release may deploy, and how it reaches the engine: no engine needed."""

from __future__ import annotations

import pytest
from docker.errors import APIError, ImageNotFound

from ml_service.errors import MlopsError, UsageError
from ml_service.release.docker_target import (
    DockerTarget,
    check_lasting_target,
    container_environment,
)
from ml_service.release.ports import ReleaseError
from ml_service.release.image import ensure_base_image
from ml_service.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("DOCKER_HOST", "RUNNER_ENVIRONMENT", "MLOPS_ENGINE_ADDRESS",
                 "MLOPS_PUBLISH_ADDRESS", "MLOPS_SCORING_LOG_URI",
                 "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_KEY",
                 "MLOPS_BASE_IMAGE"):
        monkeypatch.delenv(name, raising=False)


def test_production_is_refused_on_a_github_hosted_runners_own_engine(monkeypatch):
    monkeypatch.setenv("RUNNER_ENVIRONMENT", "github-hosted")
    with pytest.raises(UsageError) as refused:
        check_lasting_target(Settings())
    message = str(refused.value)
    assert "discarded when the job ends" in message
    assert "DOCKER_HOST=ssh://" in message and "PRODUCTION_RUNNER" in message


@pytest.mark.parametrize("runner, docker_host", [
    ("github-hosted", "ssh://deploy@prod.example"),  # a lasting Docker host
    ("github-hosted", "tcp://10.0.0.5:2376"),
    ("self-hosted", None),  # a runner on the serving host
    (None, None),  # a laptop or a server, not Actions
])
def test_production_is_allowed_where_it_outlives_the_job(monkeypatch, runner, docker_host):
    if runner:
        monkeypatch.setenv("RUNNER_ENVIRONMENT", runner)
    if docker_host:
        monkeypatch.setenv("DOCKER_HOST", docker_host)
    check_lasting_target(Settings())


def test_a_local_engine_publishes_on_loopback_and_is_smoke_tested_there():
    settings = Settings()
    assert not settings.remote_engine
    assert (settings.bind_address, settings.engine_host) == ("127.0.0.1", "127.0.0.1")


def test_a_remote_engine_is_smoke_tested_at_its_own_host_not_the_runners(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "ssh://deploy@prod.example:2222")
    settings = Settings()
    assert settings.remote_engine
    assert settings.engine_host == "prod.example"
    assert settings.bind_address == "0.0.0.0"  # reachable from the runner
    monkeypatch.setenv("MLOPS_ENGINE_ADDRESS", "10.1.2.3")
    monkeypatch.setenv("MLOPS_PUBLISH_ADDRESS", "10.1.2.3")
    settings = Settings()
    assert (settings.bind_address, settings.engine_host) == ("10.1.2.3", "10.1.2.3")


def test_containers_get_the_log_uri_and_only_the_named_credentials(monkeypatch):
    keys = {"MLOPS_API_KEYS_FILE": "/etc/scoring/keys/api-keys"}
    assert container_environment(Settings()) == keys
    monkeypatch.setenv("MLOPS_SCORING_LOG_URI", "az://logs/production")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountName=a;AccountKey=b")
    monkeypatch.setenv("UNRELATED_SECRET", "never passed")
    monkeypatch.setenv("MLOPS_API_KEYS", "the deployer's keys go to the volume, not here")
    assert container_environment(Settings()) == {
        **keys,
        "MLOPS_SCORING_LOG_URI": "az://logs/production",
        "AZURE_STORAGE_CONNECTION_STRING": "AccountName=a;AccountKey=b",
    }


def test_the_default_base_image_is_pinned_by_digest():
    assert "@sha256:" in Settings().base_image


class FakeImages:
    def __init__(self, present: set[str], pullable: bool = True):
        self.present, self.pullable, self.pulled = present, pullable, []

    def get(self, reference):
        if reference not in self.present:
            raise ImageNotFound(reference)
        return type("Image", (), {"id": f"sha256:{reference}"})()

    def pull(self, reference):
        self.pulled.append(reference)
        if not self.pullable:
            raise APIError("Get https://registry/v2/: dial tcp: connection refused")
        self.present.add(reference)
        return self.get(reference)


class FakeClient:
    def __init__(self, images: FakeImages):
        self.images = images


def test_a_base_image_on_the_engine_is_not_pulled():
    images = FakeImages({"base@sha256:1"})
    assert ensure_base_image(FakeClient(images), "base@sha256:1") == "sha256:base@sha256:1"
    assert images.pulled == []


def test_a_missing_base_image_is_pulled_by_its_pinned_reference():
    images = FakeImages(set())
    ensure_base_image(FakeClient(images), "python:3.11-slim@sha256:abc")
    assert images.pulled == ["python:3.11-slim@sha256:abc"]


def test_a_base_image_that_cannot_be_pulled_is_a_clear_error():
    with pytest.raises(MlopsError) as failed:
        ensure_base_image(FakeClient(FakeImages(set(), pullable=False)), "base:1")
    message = str(failed.value)
    assert "base image base:1 is not on this Docker engine and could not be pulled" in message
    assert "connection refused" in message and "infra/base-image/build.sh" in message


def test_a_version_whose_image_id_is_a_name_is_refused():
    """A tag could be moved to another image between the checks and the run."""
    target = DockerTarget(Settings(), client=object())
    with pytest.raises(ReleaseError, match="is not an image ID"):
        target.resolve_image(4, {"image.id": "model-scoring:latest"})

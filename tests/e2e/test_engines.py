"""What a fresh GitHub-hosted runner meets: no base image, and a lasting engine over SSH."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import requests
from docker.errors import ImageNotFound

from tests.e2e.test_release import alias, make, ok
from tests.servers import Sshd, free_port

pytestmark = pytest.mark.e2e

BASE = os.environ.get("MLOPS_BASE_IMAGE")


def _base(docker_client):
    from ml_service.settings import Settings

    return docker_client.images.get(BASE or Settings().base_image)


def test_a_base_image_missing_from_the_engine_is_pulled_and_a_dead_registry_is_clear(
    env, docker_client, local_registry  # noqa: F811
):
    """Hosted runners start with no images: `make image` pulls the pinned base itself."""
    ok(make(env, "pipeline"))
    dead = f"127.0.0.1:{free_port()}/python:3.11-slim"
    failed = make({**env, "MLOPS_BASE_IMAGE": dead}, "image")
    assert failed.returncode != 0
    assert f"base image {dead} is not on this Docker engine and could not be pulled" in (
        failed.stderr)
    assert "infra/base-image/build.sh" in failed.stderr and "Traceback" not in failed.stderr

    # Publish the base to the registry, then forget every reference to it, so the
    # engine knows it only by the pinned tag@digest the settings name.
    repository = f"{local_registry}/base-{uuid.uuid4().hex[:8]}"
    base = _base(docker_client)
    base.tag(repository, "3.11-slim")
    for line in docker_client.images.push(repository, tag="3.11-slim", stream=True,
                                          decode=True):
        assert "error" not in line, line
    base.reload()
    digest = next(d for d in base.attrs["RepoDigests"] if d.startswith(repository))
    pinned = f"{repository}:3.11-slim@{digest.split('@')[1]}"
    for reference in (f"{repository}:3.11-slim", digest):
        _forget(docker_client, reference)
    with pytest.raises(ImageNotFound):
        docker_client.images.get(pinned)

    built = ok(make({**env, "MLOPS_BASE_IMAGE": pinned}, "image"))
    assert "built" in built
    assert docker_client.images.get(pinned).id == base.id
    _forget(docker_client, digest)


def _forget(docker_client, reference: str) -> None:
    """Drop one name of an image (the image stays under its other names)."""
    try:
        docker_client.images.remove(reference)
    except ImageNotFound:  # removing the last tag of a repository drops its digest too
        pass


@pytest.fixture
def sshd(tmp_path):
    server = Sshd(tmp_path)
    yield server
    server.close()


def test_release_and_promotion_on_a_docker_host_reached_over_ssh(
    env, sshd, tmp_path, docker_client  # noqa: F811
):
    """The documented lasting-engine path, as the release workflow runs it.

    DOCKER_HOST=ssh://... (paramiko), key and host key installed from secrets
    by `make remote-engine`, containers published on the engine's address and
    smoke-tested there (127.0.0.2, not the runner's 127.0.0.1), and production
    allowed on a GitHub-hosted runner because the engine outlives the job.
    """
    home = tmp_path / "home"
    home.mkdir()
    remote = {
        **env,
        "HOME": str(home),
        # The uv and pip caches stay where they were; only ~/.ssh is new.
        "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")),
        "DOCKER_HOST": sshd.docker_host,
        "DOCKER_SSH_KEY": sshd.client_key,
        "DOCKER_SSH_KNOWN_HOSTS": sshd.known_hosts,
        "MLOPS_PUBLISH_ADDRESS": sshd.address,
        "RUNNER_ENVIRONMENT": "github-hosted",
    }
    # Without the identity the engine cannot be reached, and says so.
    refused = make(remote, "release")
    assert refused.returncode != 0
    assert "no Docker engine is reachable" in refused.stderr
    assert "make remote-engine" in refused.stderr

    installed = ok(make(remote, "remote-engine"))
    assert f"[{sshd.address}]:{sshd.port}" in installed
    assert f"smoke-tested at {sshd.address}" in installed
    assert (home / ".ssh" / "known_hosts").stat().st_mode & 0o077 == 0

    ok(make(remote, "pipeline"))
    released = ok(make(remote, "release"))
    assert f"serves at http://{sshd.address}:{env['MLOPS_QA_PORT']}" in released
    assert alias(env, "qa") == 1
    promoted = ok(make(remote, "promote"))
    assert f"production at http://{sshd.address}:{env['MLOPS_PRODUCTION_PORT']}" in promoted
    assert alias(env, "production") == 1
    production = docker_client.containers.get(f"{env['MLOPS_MODEL_NAME']}-production")
    binding = production.attrs["HostConfig"]["PortBindings"]["8080/tcp"][0]
    assert binding["HostIp"] == sshd.address
    health = requests.get(f"http://{sshd.address}:{env['MLOPS_PRODUCTION_PORT']}/health",
                          timeout=5)
    assert health.status_code == 200

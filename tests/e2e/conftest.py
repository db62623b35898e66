"""Fixtures for tests that need a real Docker engine.

They skip with the reason when no engine is reachable, unless REQUIRE_DOCKER=1
(as in CI), where a missing engine or base image is a failure.
"""

from __future__ import annotations

import os
import uuid

import pytest

from ml_service.serving.auth import new_key
from tests.conftest import isolated_env
from tests.servers import free_port

REQUIRED = os.environ.get("REQUIRE_DOCKER") == "1"
#: The /score key the stages of these tests get (MLOPS_API_KEYS of `env`).
API_KEY = new_key()
AUTH = {"authorization": f"Bearer {API_KEY}"}


def _unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"REQUIRE_DOCKER=1 but {reason}")
    pytest.skip(f"{reason} (set REQUIRE_DOCKER=1 to make this a failure)")


@pytest.fixture(scope="session")
def docker_client():
    """A Docker SDK client for a reachable engine that has the base image."""
    import docker
    from docker.errors import DockerException, ImageNotFound

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except DockerException as exc:
        _unavailable(f"no Docker engine is reachable ({type(exc).__name__})")
    from ml_service.settings import Settings

    base = Settings().base_image  # MLOPS_BASE_IMAGE or the pinned default
    try:
        client.images.get(base)
    except ImageNotFound:
        try:
            client.images.pull(base)
            return client
        except DockerException:
            pass
        _unavailable(
            f"base image {base} is not on the engine: pull it, or build one with "
            "infra/base-image/build.sh and set MLOPS_BASE_IMAGE"
        )
    return client


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory):
    """One image build directory for the session, so wheels are downloaded once."""
    return tmp_path_factory.mktemp("build")


@pytest.fixture(scope="session")
def local_registry(tmp_path_factory, docker_client):
    """A real image registry (Debian's docker-registry) on a loopback port.

    Stands in for GHCR: `make push` uploads to it and a promotion on an engine
    without the image pulls from it by digest. Docker trusts 127.0.0.0/8
    registries over plain HTTP.
    """
    import shutil

    from tests.servers import docker_registry

    binary = shutil.which("docker-registry")
    if binary is None:
        _unavailable("docker-registry is not installed (Debian package docker-registry)")
    address, process = docker_registry(binary, tmp_path_factory.mktemp("registry"))
    yield address
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def env(tmp_path, build_dir, docker_client):
    """Make's environment: isolated store, unique names and ports, fast deadlines."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    values = {
        **isolated_env(tmp_path),
        "MLOPS_BUILD_DIR": str(build_dir),
        "MLOPS_MODEL_NAME": name,
        "MLOPS_IMAGE_NAME": f"{name}-scoring",
        "MLOPS_QA_PORT": str(free_port()),
        "MLOPS_PRODUCTION_PORT": str(free_port()),
        "MLOPS_SMOKE_DEADLINE": "60",
        "MLOPS_API_KEYS": API_KEY,
    }
    yield values
    for container in docker_client.containers.list(all=True, filters={"name": name}):
        container.remove(force=True)
    remove_images(docker_client, [
        image.id for image in docker_client.images.list()
        if any(name in ref for ref in image.tags + image.attrs.get("RepoDigests", []))])
    for volume in docker_client.volumes.list(filters={"name": name}):
        volume.remove(force=True)


def remove_images(client, ids: list[str]) -> None:
    """Remove these images, children before parents (a test may build one FROM another:
    the engine refuses to delete a parent first), in a few passes."""
    from docker.errors import APIError, NotFound

    for _ in range(5):
        left = []
        for image_id in ids:
            try:
                client.images.remove(image_id, force=True)
            except NotFound:
                pass
            except APIError:  # 409: a child still uses it; the next pass retries
                left.append(image_id)
        if not left:
            return
        ids = left
    raise AssertionError(f"images left behind: {ids}")

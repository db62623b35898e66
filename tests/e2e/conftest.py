"""Fixtures for tests that need a real Docker engine.

They skip with the reason when no engine is reachable, unless REQUIRE_DOCKER=1
(as in CI), where a missing engine or base image is a failure.
"""

from __future__ import annotations

import os

import pytest

REQUIRED = os.environ.get("REQUIRE_DOCKER") == "1"


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
    base = os.environ.get("MLOPS_BASE_IMAGE", "python:3.11-slim")
    try:
        client.images.get(base)
    except ImageNotFound:
        _unavailable(
            f"base image {base} is not on the engine: pull it, or build one with "
            "infra/base-image/build.sh and set MLOPS_BASE_IMAGE"
        )
    return client


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory):
    """One image build directory for the session, so wheels are downloaded once."""
    return tmp_path_factory.mktemp("build")

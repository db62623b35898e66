"""The Docker engine the release talks to (``DOCKER_HOST``: this machine, or a host over SSH)."""

from __future__ import annotations

import os
from typing import Any

from ml_service.errors import MlopsError


def docker_client() -> Any:
    """A Docker SDK client that has answered a ping.

    Raises:
        MlopsError: If the SDK cannot reach an engine, with what to do about it.
    """
    import docker
    import paramiko
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except (DockerException, OSError) as exc:
        raise MlopsError(
            f"no Docker engine is reachable ({exc.__class__.__name__}): start Docker, "
            "or set DOCKER_HOST to a running engine"
        ) from None
    except paramiko.SSHException as exc:  # ssh:// engines: unknown host key, refused key
        raise MlopsError(
            f"no Docker engine is reachable at {os.environ.get('DOCKER_HOST')} over SSH "
            f"({exc.__class__.__name__}: {exc}): install the key and host key with "
            "`make remote-engine` (DOCKER_SSH_KEY, DOCKER_SSH_KNOWN_HOSTS)"
        ) from None
    return client

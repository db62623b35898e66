"""Credentials for a cluster: the kubeconfig a workflow gets from a secret, and the
image pull secret a cluster needs for a private registry such as GHCR."""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

import yaml

from ml_service.errors import UsageError

PULL_SECRET = "registry-credentials"


def install_kubeconfig(data: str | None, target: Path) -> str:
    """Write ``data`` (a kubeconfig, as text or base64) to ``target``, readable by us only.

    Returns:
        What was done, in a sentence.

    Raises:
        UsageError: If ``data`` is neither a kubeconfig nor base64 of one.
    """
    if not data:
        return "KUBE_CONFIG_DATA is not set: kubectl uses KUBECONFIG or ~/.kube/config as it is"
    text = data
    if "apiVersion" not in data:
        try:
            text = base64.b64decode(data, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise UsageError("KUBE_CONFIG_DATA is neither a kubeconfig nor base64 of one") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"KUBE_CONFIG_DATA is not valid YAML: {exc}") from None
    if not isinstance(config, dict) or config.get("kind") != "Config":
        raise UsageError("KUBE_CONFIG_DATA is not a kubeconfig (kind: Config)")
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(target, 0o600)
    contexts = [c.get("name", "?") for c in config.get("contexts") or []]
    return (f"installed the kubeconfig ({len(contexts)} context(s): {', '.join(contexts)}; "
            f"current: {config.get('current-context', 'none')}) as {target}")


def pull_secret(namespace: str, registry: str, username: str, password: str) -> str:
    """A ``kubernetes.io/dockerconfigjson`` Secret for ``registry``, as YAML to apply."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    config = {"auths": {registry: {"username": username, "password": password, "auth": auth}}}
    return yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": PULL_SECRET, "namespace": namespace},
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    })

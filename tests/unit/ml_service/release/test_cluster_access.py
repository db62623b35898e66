"""The kubeconfig from a secret, and the image pull secret."""

from __future__ import annotations

import base64
import json

import pytest
import yaml

from ml_service.errors import UsageError
from ml_service.release.cluster_access import install_kubeconfig, pull_secret

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: prod, cluster: {server: "https://k8s.example:443"}}]
users: [{name: deployer, user: {token: t0ken}}]
contexts: [{name: prod, context: {cluster: prod, user: deployer}}]
current-context: prod
"""


@pytest.mark.parametrize("encode", [False, True])
def test_a_kubeconfig_as_text_or_base64_is_installed_private(tmp_path, encode):
    data = base64.b64encode(KUBECONFIG.encode()).decode() if encode else KUBECONFIG
    target = tmp_path / ".kube" / "config"
    message = install_kubeconfig(data, target)
    assert target.read_text() == KUBECONFIG and target.stat().st_mode & 0o777 == 0o600
    assert "1 context(s): prod; current: prod" in message


def test_nothing_set_changes_nothing(tmp_path):
    assert "not set" in install_kubeconfig(None, tmp_path / "config")
    assert not (tmp_path / "config").exists()


@pytest.mark.parametrize("data", ["not base64 at all!", base64.b64encode(b"kind: Pod").decode(),
                                  "apiVersion: [unclosed"])
def test_anything_else_is_a_usage_error_and_writes_nothing(tmp_path, data):
    with pytest.raises(UsageError, match="KUBE_CONFIG_DATA"):
        install_kubeconfig(data, tmp_path / "config")
    assert not (tmp_path / "config").exists()


def test_the_pull_secret_holds_docker_credentials_for_the_registry():
    secret = yaml.safe_load(pull_secret("mlops-production", "ghcr.io", "owner", "pat"))
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["metadata"] == {"name": "registry-credentials", "namespace": "mlops-production"}
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert config["auths"]["ghcr.io"]["auth"] == base64.b64encode(b"owner:pat").decode()

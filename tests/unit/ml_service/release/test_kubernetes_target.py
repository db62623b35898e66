"""The Kubernetes target's pure parts: which image it deploys, and what it applies."""

from __future__ import annotations

import pytest
import yaml

from ml_service.release.kubernetes_target import VERSION_ANNOTATION, KubernetesTarget
from ml_service.release.ports import ReleaseError
from ml_service.settings import Settings
from tests.servers import kubectl_binary

REF = "ghcr.io/team/model-scoring@sha256:" + "a" * 64


def test_a_cluster_gets_the_pushed_digest_of_the_version():
    target = KubernetesTarget(Settings())
    assert target.resolve_image(4, {"image.id": "sha256:1", "image.ref": REF}) == REF


@pytest.mark.parametrize("ref", ["ghcr.io/team/model-scoring:v4",
                                 "ghcr.io/team/model-scoring@sha256:abc",
                                 REF + " ghcr.io/other:latest"])
def test_a_reference_not_pinned_by_digest_is_refused(ref):
    """A registry writer's tag could be moved between the checks and the cluster's pull."""
    with pytest.raises(ReleaseError, match="is not pinned by digest"):
        KubernetesTarget(Settings()).resolve_image(4, {"image.id": "sha256:1", "image.ref": ref})


def test_an_image_from_another_repository_than_the_projects_is_refused():
    settings = Settings(image_registry="ghcr.io/team", image_name="model-scoring")
    target = KubernetesTarget(settings)
    assert target.resolve_image(4, {"image.ref": REF}) == REF
    elsewhere = "evil.example/x@sha256:" + "a" * 64  # e.g. a multi-platform index of theirs
    with pytest.raises(ReleaseError, match="is not in ghcr.io/team/model-scoring"):
        target.resolve_image(4, {"image.ref": elsewhere})


def test_an_image_that_was_never_pushed_is_refused_with_what_to_do():
    target = KubernetesTarget(Settings())
    with pytest.raises(ReleaseError, match="built but never pushed.*mlops push --version 4"):
        target.resolve_image(4, {"image.id": "sha256:1"})


def test_namespaces_and_overlays_come_from_the_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_KUBE_NAMESPACE_PRODUCTION", "serving")
    monkeypatch.setenv("MLOPS_KUBE_OVERLAY_QA", str(tmp_path))
    target = KubernetesTarget(Settings())
    assert target.namespace("production") == "serving" and target.namespace("qa") == "mlops-qa"
    assert target.overlay("qa") == tmp_path
    assert target.overlay("production").parts[-3:] == ("kubernetes", "overlays", "production")


def test_a_missing_kubectl_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MLOPS_KUBECTL", "/nonexistent/kubectl")
    with pytest.raises(ReleaseError, match="kubectl not found: install kubectl, or set "
                                           "MLOPS_KUBECTL"):
        KubernetesTarget(Settings()).current_version("production")


@pytest.mark.skipif(kubectl_binary() is None, reason="no kubectl (make cluster-up builds one)")
def test_the_rendered_production_overlay_runs_the_digest_with_the_version_annotated(monkeypatch):
    monkeypatch.setenv("MLOPS_KUBECTL", kubectl_binary())
    documents = list(yaml.safe_load_all(KubernetesTarget(Settings()).render("production", 7,
                                                                            REF)))
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "NetworkPolicy",
                     "PodDisruptionBudget", "Service", "ServiceAccount"]
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == REF
    assert template["metadata"]["annotations"][VERSION_ANNOTATION] == "7"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    security = template["spec"]["containers"][0]["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert template["spec"]["automountServiceAccountToken"] is False
    # The review's hardening: the runtime's seccomp filter, a CPU limit, and a
    # NetworkPolicy: in on the service port only, out to DNS only.
    assert template["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert template["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "2"
    policy = next(d for d in documents if d["kind"] == "NetworkPolicy")
    # The stage's pods and a shadow's (mlops shadow), whose own app label differs.
    assert policy["spec"]["podSelector"] == {"matchExpressions": [
        {"key": "app.kubernetes.io/name", "operator": "In",
         "values": ["scoring", "scoring-shadow"]}]}
    assert deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "scoring"
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}]
    dns = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    to_shadow = {"to": [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "scoring-shadow", "mlops-template.io/stage": "production"}}}],
        "ports": [{"protocol": "TCP", "port": 8080}]}
    assert policy["spec"]["egress"] == [{"ports": dns}, to_shadow]


@pytest.mark.skipif(kubectl_binary() is None, reason="no kubectl (make cluster-up builds one)")
def test_every_stage_has_a_cpu_limit_seccomp_and_the_network_policy(monkeypatch):
    monkeypatch.setenv("MLOPS_KUBECTL", kubectl_binary())
    for stage in ("qa", "production"):
        documents = list(yaml.safe_load_all(KubernetesTarget(Settings()).render(stage, 7, REF)))
        pod = next(d for d in documents if d["kind"] == "Deployment")["spec"]["template"]["spec"]
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", stage
        assert pod["containers"][0]["resources"]["limits"]["cpu"], stage
        assert [d["metadata"]["name"] for d in documents if d["kind"] == "NetworkPolicy"] == [
            "scoring"], stage


@pytest.mark.skipif(kubectl_binary() is None, reason="no kubectl (make cluster-up builds one)")
def test_a_shadow_is_production_s_deployment_that_its_service_does_not_select(monkeypatch):
    from ml_service.release import shadow

    monkeypatch.setenv("MLOPS_KUBECTL", kubectl_binary())
    target = KubernetesTarget(Settings())
    documents = list(yaml.safe_load_all(target.render("production", 7, REF)))
    production = next(d for d in documents if d["kind"] == "Service")["spec"]["selector"]
    deployment, service = shadow.manifests(target, 9, REF)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["metadata"]["name"] == "scoring-shadow"
    assert deployment["spec"]["replicas"] == 1
    assert labels["app.kubernetes.io/name"] == "scoring-shadow"
    assert labels["mlops-template.io/track"] == "shadow"
    assert not all(labels.get(k) == v for k, v in production.items())  # not production's
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    # It copies nothing on, and its scoring log never joins production's.
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLOPS_SHADOW_FILE"] == env["MLOPS_SCORING_LOG_URI"] == ""  # beats an envFrom
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["scoring-log"]
    assert container["image"] == REF
    assert deployment["spec"]["template"]["metadata"]["annotations"][VERSION_ANNOTATION] == "9"
    production_env = {e["name"] for e in next(d for d in documents if d["kind"] == "Deployment")[
        "spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "MLOPS_SHADOW_FILE" in production_env

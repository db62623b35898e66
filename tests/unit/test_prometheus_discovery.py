"""infra/prometheus/discover.py: the targets it hands Debian's Prometheus are those
scrape-scoring.yml's Kubernetes discovery and relabel rules would give."""

from __future__ import annotations

import importlib.util

import yaml

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location(
    "discover", REPO / "infra" / "prometheus" / "discover.py")
discover = importlib.util.module_from_spec(spec)
spec.loader.exec_module(discover)


def pod(name, namespace="production", phase="Running", ip="172.17.0.5", track="stable",
        **annotations):
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": "8080",
                   "prometheus.io/path": "/metrics", **annotations}
    return {"metadata": {"name": name, "namespace": namespace,
                         "annotations": {k: v for k, v in annotations.items() if v is not None},
                         "labels": {"mlops-template.io/track": track} if track else {}},
            "status": {"phase": phase, "podIP": ip}}


def test_running_annotated_pods_are_targets_with_namespace_pod_and_track():
    found = discover.targets([
        pod("scoring-a", ip="172.17.0.7"),
        pod("scoring-canary-b", ip="172.17.0.6", track="canary"),
        pod("old", ip="172.17.0.8", track=None),  # deployed before the track label
        pod("pending", phase="Pending"),
        pod("no-ip", ip=None),
        pod("not-asked", **{"prometheus.io/scrape": "false"}),
        pod("no-port", **{"prometheus.io/port": None}),
        pod("other-path", ip="172.17.0.9", **{"prometheus.io/path": "/stats"}),
    ])
    assert found == [
        {"targets": ["172.17.0.6:8080"], "labels": {
            "namespace": "production", "pod": "scoring-canary-b", "track": "canary",
            "__metrics_path__": "/metrics"}},
        {"targets": ["172.17.0.7:8080"], "labels": {
            "namespace": "production", "pod": "scoring-a", "track": "stable",
            "__metrics_path__": "/metrics"}},
        {"targets": ["172.17.0.8:8080"], "labels": {
            "namespace": "production", "pod": "old", "__metrics_path__": "/metrics"}},
        {"targets": ["172.17.0.9:8080"], "labels": {
            "namespace": "production", "pod": "other-path", "track": "stable",
            "__metrics_path__": "/stats"}},
    ]


def test_the_kubernetes_scrape_job_sets_the_same_labels():
    job = yaml.safe_load((REPO / "infra" / "prometheus" / "scrape-scoring.yml").read_text())[0]
    targets = {rule.get("target_label") for rule in job["relabel_configs"]}
    assert {"namespace", "pod", "track", "__address__", "__metrics_path__"} <= targets
    assert job["kubernetes_sd_configs"][0]["role"] == "pod"

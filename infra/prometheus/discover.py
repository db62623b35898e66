"""Keep a Prometheus file_sd file of the cluster's scoring pods up to date.

Debian's ``prometheus`` package is built without Kubernetes service
discovery, so the local Prometheus of ``up.sh`` is fed the targets
``kubernetes_sd_configs`` with the relabel rules of ``scrape-scoring.yml``
would give: every Running pod annotated ``prometheus.io/scrape: "true"``, at
its pod IP and ``prometheus.io/port``, labelled with its namespace, pod and
track (``mlops-template.io/track``). Polls ``kubectl get pods`` every
``--interval`` seconds and rewrites the file (atomically) when it changes.

Standard library only: it runs beside the project, with the system's python3.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def targets(pods: list[dict]) -> list[dict]:
    """The file_sd groups of the pods that ask to be scraped."""
    found = []
    for pod in pods:
        meta, status = pod["metadata"], pod.get("status", {})
        annotations = meta.get("annotations") or {}
        if annotations.get("prometheus.io/scrape") != "true" or status.get("phase") != "Running":
            continue
        if not status.get("podIP") or not annotations.get("prometheus.io/port", "").isdigit():
            continue
        labels = {"namespace": meta["namespace"], "pod": meta["name"]}
        track = (meta.get("labels") or {}).get("mlops-template.io/track")
        if track:
            labels["track"] = track
        if annotations.get("prometheus.io/path"):
            labels["__metrics_path__"] = annotations["prometheus.io/path"]
        found.append({"targets": [f"{status['podIP']}:{annotations['prometheus.io/port']}"],
                      "labels": labels})
    return sorted(found, key=lambda group: group["targets"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubectl", default="kubectl")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args()
    written = None
    while True:
        result = subprocess.run(
            [args.kubectl, "--kubeconfig", args.kubeconfig, "get", "pods", "--all-namespaces",
             "-o", "json"], capture_output=True, text=True, timeout=30)
        if result.returncode == 0:
            text = json.dumps(targets(json.loads(result.stdout)["items"]), indent=1)
            if text != written:
                partial = args.out.with_suffix(".partial")
                partial.write_text(text)
                os.replace(partial, args.out)
                written = text
        else:
            print(f"kubectl get pods failed: {result.stderr.strip()[:300]}", file=sys.stderr,
                  flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())

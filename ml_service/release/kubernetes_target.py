"""The Kubernetes deploy target: each stage is a Deployment in its own namespace.

Through ``kubectl`` (its kustomize renders the stage's overlay of
``infra/kubernetes/``; the cluster is whatever the kubeconfig context names):
the image that passed QA is put into the rendered Deployment by digest and
applied, which starts a rolling update (``maxUnavailable: 0``: the old pods
serve until new ones are ready). The rollout must finish within
``MLOPS_ROLLOUT_DEADLINE``; then every pod of the new ReplicaSet is
smoke-tested through ``kubectl port-forward`` on 127.0.0.1. A rollout that
never gets ready, or a pod that fails its smoke test, is undone (``kubectl
rollout undo``: the previous ReplicaSet back) before the error is raised.

With a canary plan (``MLOPS_CANARY_STEPS``), a promotion over a running
version first serves the new one from a second Deployment in traffic steps,
judged by Prometheus (:mod:`ml_service.release.canary`).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from ml_service.release import canary, stage_keys
from ml_service.release.cluster_access import pull_secret
from ml_service.release.ports import Deployment, ReleaseError, SmokeCheck
from ml_service.settings import Settings

logger = logging.getLogger(__name__)

DEPLOYMENT = "scoring"
CONTAINER = "scoring"
VERSION_ANNOTATION = "mlops-template.io/model-version"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")
#: An image reference pinned by digest: ``<name>@sha256:<64 hex>``.
DIGEST_REF = re.compile(r"[^\s@]+@sha256:[0-9a-f]{64}")


class KubernetesTarget:
    """Stages as Deployments named ``scoring``, one namespace per stage."""

    def __init__(self, settings: Settings, plan: canary.Plan | None = None,
                 summary: Path | None = None):
        """``plan``: promote to production as a canary (the stable version must be
        running); ``summary``: a Markdown file the canary's steps are appended to."""
        self.settings, self.plan, self.summary = settings, plan, summary

    # -- DeployTarget

    def ensure_lasting(self) -> None:
        """A cluster outlives the job that deploys to it: nothing to refuse."""

    def resolve_image(self, version: int, tags: Mapping[str, str]) -> str:
        """The pushed digest of ``version``'s image (tag ``image.ref``).

        Raises:
            ReleaseError: If the image was never pushed (a cluster pulls images
                from a registry, by digest), or the record names no digest: a
                tag can be moved between the checks and the pull.
        """
        ref = tags.get("image.ref")
        if ref and not DIGEST_REF.fullmatch(ref):
            raise ReleaseError(
                f"version {version}'s image reference {ref[:100]!r} is not pinned by digest "
                "(<name>@sha256:<64 hex digits>): a tag can be moved after it is checked, so "
                "the cluster is never given one; nothing was deployed")
        settings = self.settings
        if ref and settings.image_registry and settings.image_name:  # the images it pushes
            repository = f"{settings.image_registry.rstrip('/')}/{settings.image_name}".lower()
            if ref.split("@", 1)[0] != repository:
                raise ReleaseError(
                    f"version {version}'s image reference {ref[:100]!r} is not in {repository}"
                    " (MLOPS_IMAGE_REGISTRY), where this project pushes its images: refusing "
                    "an image from elsewhere; nothing was deployed")
        if not ref:
            built = "built" if tags.get("image.id") else "not even built"
            raise ReleaseError(
                f"version {version}'s image was {built} but never pushed, and a cluster pulls "
                "images by digest from a registry: run `mlops push --version "
                f"{version}` (MLOPS_IMAGE_REGISTRY) first"
            )
        return ref

    def current_version(self, stage: str) -> int | None:
        """The model version the stage's Deployment runs, or None."""
        deployment = self._deployment(stage)
        if deployment is None:
            return None
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        value = annotations.get(VERSION_ANNOTATION)
        return int(value) if value else None

    def deploy(self, stage: str, version: int, image: str, smoke: SmokeCheck,
               keep_previous: bool) -> Deployment:
        """Roll the stage to ``image``; undo the rollout if it fails (see the module doc).

        ``keep_previous`` is always honoured: a rolling update with
        ``maxUnavailable: 0`` keeps the previous pods until the new ones are ready.
        """
        before = self.current_version(stage)
        self._ensure_namespace(stage)
        self._ensure_pull_secret(stage)
        # New keys beside the old ones while the pods roll; the old ones dropped once
        # the new pods passed, or put back alone if the rollout is undone.
        stored = self.read_keys(stage)
        during, after = stage_keys.transition(stage, stored, stage_keys.wanted(self.settings))
        if during != stored:
            self.write_keys(stage, during)
        try:
            if self.plan is not None and stage == "production" and before is not None:
                deployment = self._canary(self.plan, stage, version, image, smoke, after[0],
                                          before)
            else:
                if stage == "production":  # one an interrupted canary promotion left
                    self.delete_canary(stage)
                deployment = self._roll(stage, version, image, smoke, after[0], before)
        except BaseException:
            if stored and during != stored:
                self.write_keys(stage, stored)
            raise
        if after != during:
            self.write_keys(stage, after)
        return deployment

    def _canary(self, plan: canary.Plan, stage: str, version: int, image: str,
                smoke: SmokeCheck, key: str, before: int) -> Deployment:
        def check(pod: str) -> None:
            try:
                with self.port_forward(stage, f"pod/{pod}") as url:
                    smoke(url, key)
            except ReleaseError as exc:
                raise ReleaseError(f"canary pod {pod} failed its smoke test: {exc}") from None

        deployment: Deployment = canary.run(
            self, plan, stage, version, image, before, check,
            lambda: self._roll(stage, version, image, smoke, key, before), self.summary)
        return deployment

    # -- the canary Deployment (ml_service/release/canary.py)

    def replicas(self, stage: str) -> int:
        """Pods the stage's Deployment asks for now (its autoscaler's choice, if any)."""
        deployment = self._deployment(stage)
        return int(deployment["spec"].get("replicas", 1)) if deployment else 1

    def apply_canary(self, stage: str, version: int, image: str, pods: int) -> None:
        """Run ``pods`` pods of ``image`` as the canary Deployment; wait until they are ready.

        Raises:
            ReleaseError: If they are not ready within MLOPS_ROLLOUT_DEADLINE.
        """
        deployment = next(d for d in yaml.safe_load_all(self.render(stage, version, image))
                          if d and d.get("kind") == "Deployment")
        deployment["metadata"]["name"] = canary.CANARY
        deployment["spec"]["replicas"] = pods
        for labels in (deployment["spec"]["selector"]["matchLabels"],
                       deployment["spec"]["template"]["metadata"]["labels"]):
            labels[canary.TRACK_LABEL] = "canary"
        self._kubectl(stage, "apply", "-f", "-", input=yaml.safe_dump(deployment))
        deadline = self.settings.rollout_deadline
        try:
            self._kubectl(stage, "rollout", "status", f"deployment/{canary.CANARY}",
                          f"--timeout={deadline:.0f}s", timeout=deadline + 30)
        except ReleaseError as exc:
            raise ReleaseError(f"the canary pods of version {version} were not ready within "
                               f"{deadline:.0f}s ({exc})") from None

    def delete_canary(self, stage: str) -> None:
        """Remove the canary Deployment: its pods leave the Service at once (and drain)."""
        self._kubectl(stage, "delete", "deployment", canary.CANARY, "--ignore-not-found",
                      "--wait=false")

    def _roll(self, stage: str, version: int, image: str, smoke: SmokeCheck, key: str,
              before: int | None) -> Deployment:
        self._kubectl(stage, "apply", "-f", "-", input=self.render(stage, version, image))
        deadline = self.settings.rollout_deadline
        try:
            self._kubectl(stage, "rollout", "status", f"deployment/{DEPLOYMENT}",
                          f"--timeout={deadline:.0f}s", timeout=deadline + 30)
        except ReleaseError as exc:
            self._undo(stage, before, f"the new pods of version {version} were not ready within "
                       f"{deadline:.0f}s ({exc})")
        pods = self.new_pods(stage)
        for pod in pods:
            try:
                with self.port_forward(stage, f"pod/{pod}") as url:
                    smoke(url, key)
            except ReleaseError as exc:
                self._undo(stage, before, f"pod {pod} failed its smoke test: {exc}")
        logger.info("%s: version %s rolled out on %d pod(s)", stage, version, len(pods))
        return Deployment(stage, version, f"{self.namespace(stage)}/deployment/{DEPLOYMENT}",
                          image, f"service/{DEPLOYMENT} in namespace {self.namespace(stage)}")

    # -- the stage's API keys: the Secret scoring-api-keys, mounted into the pods

    def read_keys(self, stage: str) -> list[str]:
        """The keys in the stage's Secret ([] if it has none)."""
        found = self._kubectl(stage, "get", "secret", stage_keys.SECRET, "--ignore-not-found",
                              "-o", "json").strip()
        if not found:
            return []
        encoded = json.loads(found).get("data", {}).get(stage_keys.FILE, "")
        return stage_keys.parse_stored(base64.b64decode(encoded).decode(),
                                       f"Secret {self.namespace(stage)}/{stage_keys.SECRET}")

    def write_keys(self, stage: str, keys: list[str]) -> None:
        """Replace the stage's Secret; the kubelet updates the pods' file, which they
        re-read (no restart)."""
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                  "metadata": {"name": stage_keys.SECRET,
                               "labels": {"app.kubernetes.io/name": DEPLOYMENT}},
                  "data": {stage_keys.FILE: base64.b64encode(
                      stage_keys.file_text(keys).encode()).decode()}}
        # replace (or create), not apply: apply would copy the keys into an annotation.
        text = json.dumps(secret)
        if self._kubectl(stage, "get", "secret", stage_keys.SECRET, "--ignore-not-found",
                         "-o", "name").strip():
            self._kubectl(stage, "replace", "-f", "-", input=text)
        else:
            self._kubectl(stage, "create", "-f", "-", input=text)

    def check_access(self, stage: str) -> str:
        """Say which cluster the stage's context reaches, or raise ReleaseError."""
        allowed = self._kubectl(stage, "auth", "can-i", "patch", "deployments").strip()
        if allowed != "yes":
            raise ReleaseError(f"the kubeconfig's user may not update Deployments in namespace "
                               f"{self.namespace(stage)}")
        server = self._run([*self._base(stage, namespaced=False), "config", "view", "--minify",
                            "-o", "jsonpath={.clusters[0].cluster.server}"])
        return (f"the cluster at {server} answers; Deployments in namespace "
                f"{self.namespace(stage)} may be updated")

    # -- what runs where

    def namespace(self, stage: str) -> str:
        """The stage's namespace (MLOPS_KUBE_NAMESPACE_<STAGE>)."""
        return {"qa": self.settings.kube_namespace_qa,
                "production": self.settings.kube_namespace_production}[stage]

    def overlay(self, stage: str) -> Path:
        """The stage's kustomize overlay (MLOPS_KUBE_OVERLAY_<STAGE>)."""
        return {"qa": self.settings.kube_overlay_qa,
                "production": self.settings.kube_overlay_production}[stage]

    def statuses(self) -> list[dict[str, str]]:
        """Replicas ready, image and version of each stage's Deployment."""
        found = []
        for stage, name in (("qa", DEPLOYMENT), ("production", DEPLOYMENT),
                            ("production", canary.CANARY)):
            deployment = self._deployment(stage, name)
            if deployment is None:
                continue
            template = deployment["spec"]["template"]
            status = deployment.get("status", {})
            found.append({
                "stage": stage if name == DEPLOYMENT else f"{stage} (canary)",
                "version": template["metadata"].get("annotations", {}).get(
                    VERSION_ANNOTATION, ""),
                "container": f"{self.namespace(stage)}/deployment/{name}",
                "status": f"{status.get('readyReplicas', 0)}/{deployment['spec']['replicas']} "
                          "ready",
                "health": "rolled out" if status.get("updatedReplicas") == status.get(
                    "replicas") == status.get("readyReplicas") else "rolling",
                "image": template["spec"]["containers"][0]["image"],
            })
        return found

    def render(self, stage: str, version: int, image: str) -> str:
        """The stage's overlay rendered by kustomize, with ``image`` and ``version`` set."""
        rendered = self._run([self.settings.kubectl, "kustomize", str(self.overlay(stage))])
        documents = [d for d in yaml.safe_load_all(rendered) if d]
        deployments = [d for d in documents
                       if d.get("kind") == "Deployment" and d["metadata"]["name"] == DEPLOYMENT]
        if len(deployments) != 1:
            raise ReleaseError(f"{self.overlay(stage)} does not render one Deployment named "
                               f"'{DEPLOYMENT}'")
        deployment = deployments[0]
        deployment["metadata"].setdefault("annotations", {})[
            "kubernetes.io/change-cause"] = f"mlops: version {version}, {image}"
        template = deployment["spec"]["template"]
        template["metadata"].setdefault("annotations", {})[VERSION_ANNOTATION] = str(version)
        containers = [c for c in template["spec"]["containers"] if c["name"] == CONTAINER]
        if not containers:
            raise ReleaseError(f"the Deployment of {self.overlay(stage)} has no container "
                               f"'{CONTAINER}'")
        containers[0]["image"] = image
        return yaml.safe_dump_all(documents, sort_keys=False)

    def new_pods(self, stage: str, name: str = DEPLOYMENT) -> list[str]:
        """Names of the pods of the Deployment's current ReplicaSet."""
        deployment = self._deployment(stage, name)
        if deployment is None:
            return []
        revision = deployment["metadata"].get("annotations", {}).get(REVISION_ANNOTATION)
        selector = ",".join(f"{k}={v}" for k, v in
                            deployment["spec"]["selector"]["matchLabels"].items())
        replicasets = json.loads(self._kubectl(stage, "get", "replicasets", "-l", selector,
                                               "-o", "json"))["items"]
        # Its own ReplicaSets only: the stable Deployment's selector matches the canary's too.
        current = [rs for rs in replicasets
                   if rs["metadata"].get("annotations", {}).get(REVISION_ANNOTATION) == revision
                   and any(owner.get("name") == name
                           for owner in rs["metadata"].get("ownerReferences", []))]
        if not current:
            raise ReleaseError(f"no ReplicaSet of revision {revision} in {self.namespace(stage)}")
        template_hash = current[0]["metadata"]["labels"]["pod-template-hash"]
        pods = json.loads(self._kubectl(stage, "get", "pods", "-l",
                                        f"{selector},pod-template-hash={template_hash}",
                                        "-o", "json"))["items"]
        return sorted(p["metadata"]["name"] for p in pods
                      if not p["metadata"].get("deletionTimestamp"))

    @contextmanager
    def port_forward(self, stage: str, resource: str) -> Iterator[str]:
        """``kubectl port-forward`` of ``resource``'s port 8080 to a free port on 127.0.0.1."""
        command = [*self._base(stage), "port-forward", "--address", "127.0.0.1", resource, ":8080"]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            match = _FORWARDING.search(line)
            if match is None:
                error = process.stderr.read() if process.stderr else ""
                raise ReleaseError(f"kubectl port-forward {resource} failed: "
                                   f"{(line + error).strip()[:300]}")
            yield f"http://127.0.0.1:{match.group(1)}"
        finally:
            process.terminate()
            process.wait(timeout=10)

    def kubectl(self, stage: str, *args: str, input: str | None = None,
                timeout: float = 60) -> str:
        """Run kubectl in the stage's context and namespace; its output.

        Raises:
            ReleaseError: If it fails or does not finish within ``timeout`` s.
        """
        return self._kubectl(stage, *args, input=input, timeout=timeout)

    def deployment(self, stage: str, name: str = DEPLOYMENT) -> dict[str, Any] | None:
        """The stage's Deployment ``name`` (as JSON), or None."""
        return self._deployment(stage, name)

    # -- internals

    def _undo(self, stage: str, before: int | None, reason: str) -> None:
        if before is None:
            self._kubectl(stage, "delete", "deployment", DEPLOYMENT, "--wait=false")
            raise ReleaseError(f"{reason}; nothing was serving before, so the new Deployment "
                               "was deleted")
        self._kubectl(stage, "rollout", "undo", f"deployment/{DEPLOYMENT}")
        self._kubectl(stage, "rollout", "status", f"deployment/{DEPLOYMENT}",
                      f"--timeout={self.settings.rollout_deadline:.0f}s",
                      timeout=self.settings.rollout_deadline + 30)
        raise ReleaseError(f"{reason}; the rollout was undone: {stage} is untouched and still "
                           f"serves version {before}")

    def _ensure_namespace(self, stage: str) -> None:
        namespace = yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": self.namespace(stage)}})
        self._run([*self._base(stage, namespaced=False), "apply", "-f", "-"], input=namespace)

    def _ensure_pull_secret(self, stage: str) -> None:
        """The registry credentials as the pods' pull secret, when they are configured."""
        settings = self.settings
        if not (settings.image_registry and settings.registry_username
                and settings.registry_password):
            return
        host = settings.image_registry.split("/")[0]
        secret = pull_secret(self.namespace(stage), host, settings.registry_username,
                             settings.registry_password.get_secret_value())
        self._kubectl(stage, "apply", "-f", "-", input=secret)

    def _deployment(self, stage: str, name: str = DEPLOYMENT) -> dict[str, Any] | None:
        found = json.loads(self._kubectl(stage, "get", "deployments", "--field-selector",
                                         f"metadata.name={name}", "-o", "json"))["items"]
        return found[0] if found else None

    def _base(self, stage: str, namespaced: bool = True) -> list[str]:
        command = [self.settings.kubectl]
        context = {"qa": self.settings.kube_context_qa,
                   "production": self.settings.kube_context_production}[stage]
        if context:
            command += ["--context", context]
        if namespaced:
            command += ["--namespace", self.namespace(stage)]
        return command

    def _kubectl(self, stage: str, *args: str, input: str | None = None,
                 timeout: float = 60) -> str:
        return self._run([*self._base(stage), *args], input=input, timeout=timeout)

    def _run(self, command: list[str], input: str | None = None, timeout: float = 60) -> str:
        try:
            result = subprocess.run(command, input=input, capture_output=True, text=True,
                                    timeout=timeout)
        except FileNotFoundError:
            raise ReleaseError(f"{command[0]} not found: install kubectl, or set MLOPS_KUBECTL "
                               "to it (infra/kubernetes/build.sh builds one)") from None
        except subprocess.TimeoutExpired:
            raise ReleaseError(f"`{' '.join(command[1:4])} …` did not finish in "
                               f"{timeout:.0f}s") from None
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip().splitlines()
            raise ReleaseError(f"kubectl {' '.join(command[1:4])} …: "
                               f"{' | '.join(message[-3:]) or 'failed'}")
        return result.stdout

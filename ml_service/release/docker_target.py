"""The Docker deploy target: each stage is a container on a Docker engine.

The Docker SDK talks to whatever ``DOCKER_HOST`` points at (this machine, or a
lasting host over ssh://). Containers carry labels naming their stage and
model version, so the engine itself says what runs where.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ml_service.errors import UsageError
from ml_service.release import stage_keys
from ml_service.release.ports import Deployment, ReleaseError, SmokeCheck
from ml_service.release.smoke import wait_healthy
from ml_service.settings import Settings

STAGE_LABEL = "io.github.mlops-template.stage"
#: Where a stage container writes its scoring log (a volume per stage).
LOG_DIR = "/var/log/scoring"
VERSION_LABEL = "io.github.mlops-template.model.version"


def container_environment(settings: Settings) -> dict[str, str]:
    """What a stage container needs beyond the image: its key file, where to ship its log.

    The storage credentials are passed by name from this process's
    environment (the workflow maps them from secrets), never baked in. The
    API keys are not in the environment (``docker inspect`` shows it): they
    are a file on the stage's keys volume.
    """
    environment = {"MLOPS_API_KEYS_FILE": f"{stage_keys.MOUNT}/{stage_keys.FILE}"}
    if not settings.scoring_log_uri:
        return environment
    environment["MLOPS_SCORING_LOG_URI"] = settings.scoring_log_uri
    for name in settings.scoring_log_credentials:
        if os.environ.get(name):
            environment[name] = os.environ[name]
    return environment


def check_lasting_target(settings: Settings) -> None:
    """Refuse to deploy production where it cannot outlive the job.

    A GitHub-hosted runner is discarded when its job ends, and its Docker
    engine with it: a production container there would be gone minutes after
    alias ``production`` said it serves.

    Raises:
        UsageError: On a GitHub-hosted runner without a remote DOCKER_HOST.
    """
    if settings.runner_environment == "github-hosted" and not settings.remote_engine:
        raise UsageError(
            "refusing to deploy production to this GitHub-hosted runner's own Docker engine: "
            "the runner is discarded when the job ends, so nothing would keep serving while "
            "alias 'production' said it did. Configure a lasting target: a Docker host (the "
            "production environment's secrets DOCKER_HOST=ssh://user@host, DOCKER_SSH_KEY and "
            "DOCKER_SSH_KNOWN_HOSTS), or a self-hosted runner on the serving host (repository "
            "variable PRODUCTION_RUNNER=<its label>); see docs/github-setup.md, section 3"
        )


class DockerTarget:
    """Stages as containers ``<model name>-<stage>`` on one Docker engine."""

    def __init__(self, settings: Settings, client: Any = None):
        self.settings = settings
        self._client = client

    @property
    def client(self) -> Any:
        """The Docker SDK client, connected on first use (so checks that need no
        engine, such as :meth:`ensure_lasting`, work without one)."""
        if self._client is None:
            from ml_service.release.engine import docker_client

            self._client = docker_client()
        return self._client

    # -- DeployTarget

    def ensure_lasting(self) -> None:
        """See :func:`check_lasting_target`."""
        check_lasting_target(self.settings)

    def resolve_image(self, version: int, tags: Mapping[str, str]) -> str:
        """The image ID recorded for ``version``, pulled by digest if it is not local.

        Raises:
            ReleaseError: If no image was built for it, or the pulled image differs.
        """
        from docker.errors import ImageNotFound

        from ml_service.release.supply_chain import is_image_id

        image_id = tags.get("image.id")
        if not image_id:
            raise ReleaseError(
                f"no image was built for version {version}: run `mlops release --version "
                f"{version}`"
            )
        if not is_image_id(image_id):
            raise ReleaseError(
                f"version {version}'s image.id {image_id[:80]!r} is not an image ID (sha256: and "
                "64 hex digits): a name or tag could be moved between the checks and the run; "
                "nothing was deployed")
        try:
            self.client.images.get(image_id)
            return image_id
        except ImageNotFound:
            pass
        ref = tags.get("image.ref")
        if not ref:
            raise ReleaseError(
                f"image {image_id[:19]} of version {version} is not on this engine and was "
                "never pushed: run `mlops push` where it was built, or `mlops release --rebuild`"
            )
        pulled = self.client.images.pull(ref)
        if pulled.id != image_id:
            raise ReleaseError(f"{ref} is image {pulled.id[:19]}, expected {image_id[:19]}")
        return image_id

    def current_version(self, stage: str) -> int | None:
        """The version label of the stage's container, or None."""
        current = self._get(self.container_name(stage))
        label = current.labels.get(VERSION_LABEL) if current is not None else None
        return int(label) if label else None

    def deploy(self, stage: str, version: int, image: str, smoke: SmokeCheck,
               keep_previous: bool) -> Deployment:
        """Run ``image`` as ``stage``; see :class:`ml_service.release.ports.DeployTarget`.

        New keys are added beside the old ones for the deploy, and the old ones
        dropped once it passed (put back alone if it fails): see
        :func:`ml_service.release.stage_keys.transition`.
        """
        stored = self.read_keys(stage, image)
        during, after = stage_keys.transition(stage, stored, stage_keys.wanted(self.settings))
        if during != stored:
            self.write_keys(stage, during, image)
        try:
            deployment = self._deploy(stage, version, image, smoke, after[0], keep_previous)
        except BaseException:
            if stored and during != stored:
                self.write_keys(stage, stored, image)
            raise
        if after != during:
            self.write_keys(stage, after, image)
        return deployment

    def _deploy(self, stage: str, version: int, image: str, smoke: SmokeCheck, key: str,
                keep_previous: bool) -> Deployment:
        if keep_previous:
            return self._switch(stage, version, image, smoke, key)
        name = self.container_name(stage)
        old = self._get(name)
        if old is not None:
            old.remove(force=True)
        self._start(stage, image, version, name)
        url = self._url(self._port(stage))
        smoke(url, key)
        return Deployment(stage, version, name, image, url)

    # -- the stage's API keys: a file on the volume <container>-api-keys

    def stage_image(self, stage: str) -> str:
        """The image of the stage's container (what the key volume is read through).

        Raises:
            ReleaseError: If nothing is deployed to ``stage``.
        """
        current = self._get(self.container_name(stage))
        if current is None:
            raise ReleaseError(f"nothing is deployed to {stage} on this engine: its keys are "
                               "set by its first release (MLOPS_API_KEYS, or a new key)")
        return str(current.attrs["Image"])

    def read_keys(self, stage: str, image: str | None = None) -> list[str]:
        """The keys on the stage's volume ([] if it has none)."""
        from docker.errors import NotFound

        with self._keys_box(stage, image or self.stage_image(stage), "ro") as box:
            try:
                stream, _ = box.get_archive(f"{stage_keys.MOUNT}/{stage_keys.FILE}")
            except NotFound:
                return []
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
                member = archive.next()
                handle = archive.extractfile(member) if member is not None else None
                text = handle.read().decode() if handle is not None else ""
        return stage_keys.parse_stored(text, f"the {stage} keys volume")

    def write_keys(self, stage: str, keys: list[str], image: str | None = None) -> None:
        """Replace the keys on the stage's volume; the service reads them within a second."""
        data = stage_keys.file_text(keys).encode()
        info = tarfile.TarInfo(stage_keys.FILE)
        info.size, info.mode, info.mtime = len(data), 0o400, int(time.time())
        info.uid = info.gid = 10001  # the service's user: only it reads the file
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            tar.addfile(info, io.BytesIO(data))
        with self._keys_box(stage, image or self.stage_image(stage), "rw") as box:
            if not box.put_archive(stage_keys.MOUNT, archive.getvalue()):
                raise ReleaseError(f"could not write the {stage} keys volume")

    def copy_scoring_log(self, stage: str, into: Path) -> Path:
        """Copy the stage's scoring log (its volume) into ``into``; the copy's folder.

        Raises:
            ReleaseError: If nothing is deployed to ``stage`` on this engine.
        """
        from docker.errors import NotFound

        from ml_service.release.supply_chain import plain_members

        volume = f"{self.container_name(stage)}-scoring-log"
        box = self.client.containers.create(
            self.stage_image(stage), command=["true"], network_disabled=True,
            volumes={volume: {"bind": LOG_DIR, "mode": "ro"}})
        try:
            try:
                stream, _ = box.get_archive(LOG_DIR)
            except NotFound:
                raise ReleaseError(f"the {stage} container has no scoring log at {LOG_DIR}"
                                   ) from None
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
                files = plain_members(archive, f"volume {volume}", LOG_DIR)
                archive.extractall(into, members=files)
        finally:
            box.remove(force=True)
        return into / Path(LOG_DIR).name

    def _keys_volume(self, stage: str) -> str:
        return f"{self.container_name(stage)}-api-keys"

    @contextmanager
    def _keys_box(self, stage: str, image: str, mode: str) -> Iterator[Any]:
        """A container that is never started, with the keys volume mounted: files are
        copied in and out of it (the stage's own container has it read-only)."""
        box = self.client.containers.create(
            image, command=["true"], network_disabled=True,
            volumes={self._keys_volume(stage): {"bind": stage_keys.MOUNT, "mode": mode}})
        try:
            yield box
        finally:
            box.remove(force=True)

    # -- what runs where

    def container_name(self, stage: str) -> str:
        """Name of a stage's container, e.g. ``diabetes-ridge-production``."""
        return f"{self.settings.model_name}-{stage}"

    def statuses(self) -> list[dict[str, str]]:
        """Each stage container's stage, version, image and health."""
        from docker.errors import NotFound

        found = []
        for container in self.client.containers.list(all=True, sparse=True,
                                                     filters={"label": STAGE_LABEL}):
            try:
                container.reload()
            except NotFound:  # removed since it was listed (another release on this engine)
                continue
            state = container.attrs.get("State", {})
            found.append(
                {
                    "container": container.name,
                    "stage": container.labels.get(STAGE_LABEL, ""),
                    "version": container.labels.get(VERSION_LABEL, ""),
                    "image": str(container.attrs.get("Image", ""))[:19],
                    "status": state.get("Status", container.status),
                    "health": state.get("Health", {}).get("Status", ""),
                }
            )
        return sorted(found, key=lambda d: d["container"])

    # -- internals

    def _switch(self, stage: str, version: int, image: str, smoke: SmokeCheck,
                key: str) -> Deployment:
        """Smoke-test ``image`` beside the stage's container, then swap it in.

        The candidate first runs on a spare port while the current container
        keeps serving; only a candidate that passes replaces it. The swap
        itself is smoke-tested again, with the old container kept stopped as a
        standby until the new one passes.
        """
        name = self.container_name(stage)
        current = self._get(name)
        serving = (
            f"{stage} is untouched and still serves version {current.labels.get(VERSION_LABEL)}"
            if current is not None else "nothing was deployed"
        )
        candidate = self._start("candidate", image, version, f"{name}-candidate", stage)
        try:
            smoke(self._published_url(candidate), key)
        except ReleaseError as exc:
            raise ReleaseError(f"{exc}; {serving}") from None
        finally:
            candidate.remove(force=True)

        standby = f"{name}-previous"
        stale = self._get(standby)
        if stale is not None:
            stale.remove(force=True)
        if current is not None:
            current.stop(timeout=10)
            current.rename(standby)
        url = self._url(self._port(stage))
        try:
            self._start(stage, image, version, name)
            smoke(url, key)
        except Exception as exc:
            failed = self._get(name)
            if failed is not None:
                failed.remove(force=True)
            if current is not None:
                current.rename(name)
                current.start()
                wait_healthy(url, self.settings.smoke_deadline)
            raise ReleaseError(
                f"version {version} passed its smoke test but failed on the {stage} port: {exc}; "
                f"the previous {stage} container is serving again"
            ) from None
        if current is not None:
            current.remove(force=True)
        return Deployment(stage, version, name, image, url)

    def _port(self, stage: str) -> int | None:
        # A candidate gets a free port chosen by Docker; see _published_url.
        ports = {"qa": self.settings.qa_port, "production": self.settings.production_port}
        return ports.get(stage)

    def _start(self, stage: str, image_id: str, version: int, name: str,
               keys_of: str | None = None) -> Any:
        """Run the container; it reads the keys of stage ``keys_of`` (default ``stage``)."""
        settings = self.settings
        return self.client.containers.run(
            image_id,
            name=name,
            detach=True,
            ports={"8080/tcp": (settings.bind_address, self._port(stage))},
            environment=container_environment(settings),
            labels={STAGE_LABEL: stage, VERSION_LABEL: str(version)},
            restart_policy={"Name": "unless-stopped"},
            read_only=True,
            # It serves on 8080 as uid 10001: no capability is needed.
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            mem_limit=settings.container_memory,
            pids_limit=settings.container_pids,
            tmpfs={"/tmp": "size=16m"},
            # One scoring-log volume per stage, kept across deployments; its keys, read-only.
            volumes={f"{self.container_name(stage)}-scoring-log": {
                "bind": LOG_DIR, "mode": "rw"},
                self._keys_volume(keys_of or stage): {"bind": stage_keys.MOUNT, "mode": "ro"}},
        )

    def _url(self, port: int | str | None) -> str:
        return f"http://{self.settings.engine_host}:{port}"

    def _published_url(self, container: Any) -> str:
        container.reload()
        binding = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]
        return self._url(binding["HostPort"])

    def _get(self, name: str) -> Any:
        from docker.errors import NotFound

        try:
            return self.client.containers.get(name)
        except NotFound:
            return None

"""Release: build the scoring image, run it in QA, promote it to production.

QA and production are containers on a Docker engine (the Docker SDK talks to
whatever ``DOCKER_HOST`` points at). Each step records what it did in the
registry, so the state survives the process:

- model version tags ``image.id`` / ``image.tag``: the image built for it;
- alias ``qa``: the version whose image passed the QA smoke test;
- alias ``production``: the version serving in production, and the registered
  model tag ``production.history`` (versions in promotion order) for rollback.

Promotion runs the exact image (by ID) that passed QA, never a rebuild.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diabetes_regression.schema import CONTRACT
from ml_service.bundle import export_bundle
from ml_service.errors import MlopsError, UsageError
from ml_service.settings import Settings

logger = logging.getLogger(__name__)

PROJECT = Path(__file__).resolve().parents[1]
DOCKERFILE = PROJECT / "environments" / "scoring" / "Dockerfile"
SCORING_REQUIREMENTS = PROJECT / "environments" / "scoring" / "requirements.txt"
STAGE_LABEL = "io.github.mlops-template.stage"
VERSION_LABEL = "io.github.mlops-template.model.version"
HISTORY_TAG = "production.history"
SMOKE_ROWS = 5


class ReleaseError(MlopsError):
    """A release step failed; the message says what state things were left in."""


@dataclass
class Deployment:
    """A stage's running container."""

    stage: str
    version: int
    container: str
    image_id: str
    url: str


# ---------------------------------------------------------------------- docker


def docker_client():
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


# ----------------------------------------------------------------------- image


def gather_wheels(settings: Settings) -> tuple[Path, Path]:
    """Download the scoring image's wheels on the host, checked against their hashes.

    The requirements are ``environments/scoring/requirements.txt`` (exported from
    uv.lock by ``make environments``); the project's own wheel is built from
    the checkout.

    Returns:
        (requirements file, wheels directory). The wheels directory is kept
        between builds, so only new pins are downloaded.
    """
    wheels = settings.build_dir.resolve() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    arch = platform.machine()
    _run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--require-hashes", "--no-deps", "--only-binary=:all:",
         "--python-version", settings.image_python, "--implementation", "cp",
         "--platform", f"manylinux_2_17_{arch}", "--platform", f"manylinux2014_{arch}",
         "--platform", f"manylinux_2_28_{arch}", "--platform", f"manylinux_2_34_{arch}",
         "-r", str(SCORING_REQUIREMENTS), "--dest", str(wheels)],
        "download the scoring wheels",
    )
    for old in wheels.glob("mlops_template-*.whl"):
        old.unlink()
    _run(
        [str(Path(sys.executable).parent / "uv"), "build", "--wheel", "--quiet",
         "--out-dir", str(wheels), str(PROJECT)],
        "build the project wheel",
    )
    return SCORING_REQUIREMENTS, wheels


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise MlopsError(f"could not {what}: " + " | ".join(tail))


def ensure_base_image(client, reference: str) -> str:
    """Make sure the engine has the base image ``reference``, pulling it if not.

    Hosted CI runners start with no images, so a missing base is pulled (by
    the digest in the reference, when it has one). The build itself then runs
    with no network.

    Returns:
        The base image's ID.

    Raises:
        MlopsError: If it is missing and cannot be pulled, with both ways out.
    """
    from docker.errors import DockerException, ImageNotFound

    try:
        return client.images.get(reference).id
    except ImageNotFound:
        pass
    logger.info("base image %s is not on the engine: pulling it", reference)
    try:
        return client.images.pull(reference).id
    except DockerException as exc:
        reason = getattr(exc, "explanation", None) or str(exc)
        raise MlopsError(
            f"base image {reference} is not on this Docker engine and could not be pulled "
            f"({reason}); on a host without registry access build one with "
            "infra/base-image/build.sh and set MLOPS_BASE_IMAGE to it"
        ) from None


def build_image(settings: Settings, registry, version: int, client=None) -> tuple[str, str]:
    """Build the scoring image for ``version`` with no network during the build.

    Returns:
        (image ID, tag). Both are also recorded as tags on the model version.
    """
    from docker.errors import BuildError

    client = client or docker_client()
    ensure_base_image(client, settings.base_image)
    requirements, wheels = gather_wheels(settings)
    context = settings.build_dir.resolve() / "context"
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    shutil.copy2(DOCKERFILE, context / "Dockerfile")
    shutil.copy2(requirements, context / "requirements.txt")
    shutil.copytree(wheels, context / "wheels")
    metadata = export_bundle(registry, version, context / "bundle")

    tag = f"{settings.image_name}:v{version}"
    started = time.perf_counter()
    try:
        image, _ = client.images.build(
            path=str(context),
            tag=tag,
            rm=True,
            forcerm=True,
            pull=False,
            network_mode="none",  # hermetic: everything comes from the context
            buildargs={
                "BASE_IMAGE": settings.base_image,
                "MODEL_NAME": metadata.name,
                "MODEL_VERSION": str(version),
                "GIT_COMMIT": metadata.git_commit,
                "MODEL_SHA256": metadata.sha256,
            },
        )
    except BuildError as exc:
        log = "".join(chunk.get("stream", "") for chunk in exc.build_log)[-2000:]
        raise MlopsError(f"docker build failed: {exc.msg}\n{log}") from None
    logger.info("built %s (%s) in %.1fs", tag, image.id, time.perf_counter() - started)
    registry.client.set_model_version_tag(registry.name, str(version), "image.id", image.id)
    registry.client.set_model_version_tag(registry.name, str(version), "image.tag", tag)
    return image.id, tag


# ------------------------------------------------------------------ smoke test


def smoke_payload(settings: Settings) -> list[list[float]]:
    """The fixed smoke-test rows: the first rows of the training dataset."""
    import pandas as pd

    frame = pd.read_csv(settings.data_path, nrows=SMOKE_ROWS)
    return frame[CONTRACT.feature_names].astype(float).values.tolist()


def smoke_test(url: str, version: int, expected: np.ndarray, rows: list, deadline: float) -> None:
    """Wait for ``url`` to be healthy, then check it scores ``rows`` as ``expected``.

    Raises:
        ReleaseError: If the service is not healthy in time, serves another
            version, or predicts differently from the registry's model.
    """
    import requests

    wait_healthy(url, deadline)
    response = requests.post(f"{url}/score", json={"data": rows}, timeout=10)
    if response.status_code != 200:
        raise ReleaseError(f"{url}/score answered {response.status_code}: {response.text[:300]}")
    body = response.json()
    served = body.get("model", {}).get("version")
    if served != version:
        raise ReleaseError(f"{url} serves version {served}, expected {version}")
    got = np.asarray(body.get("result"), dtype=float)
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-9, atol=1e-9):
        raise ReleaseError(
            f"{url} predictions {got.round(4).tolist()} differ from the registry model's "
            f"{expected.round(4).tolist()}"
        )


def wait_healthy(url: str, deadline: float) -> float:
    """Poll ``url``/health until it answers 200; return the seconds it took.

    Raises:
        ReleaseError: If it does not within ``deadline`` seconds.
    """
    import requests

    started = time.monotonic()
    last = "no answer"
    while True:
        try:
            response = requests.get(f"{url}/health", timeout=2)
            if response.status_code == 200:
                return time.monotonic() - started
            last = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        if time.monotonic() - started > deadline:
            raise ReleaseError(f"{url} not healthy within {deadline:.0f}s (last: {last})")
        time.sleep(0.25)


def expected_predictions(registry, version: int, rows: list) -> np.ndarray:
    """What the registry's own copy of ``version`` predicts for ``rows``."""
    import pandas as pd

    model = registry.load_model(version)
    return np.asarray(model.predict(pd.DataFrame(rows, columns=CONTRACT.feature_names)), float)


# ---------------------------------------------------------------- deployments


def container_name(settings: Settings, stage: str) -> str:
    """Name of a stage's container, e.g. ``diabetes-ridge-production``."""
    return f"{settings.model_name}-{stage}"


def _port(settings: Settings, stage: str) -> int | None:
    # A candidate gets a free port chosen by Docker; see _published_url.
    return {"qa": settings.qa_port, "production": settings.production_port}.get(stage)


def _start(client, settings: Settings, stage: str, image_id: str, version: int, name: str):
    return client.containers.run(
        image_id,
        name=name,
        detach=True,
        ports={"8080/tcp": (settings.bind_address, _port(settings, stage))},
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
        # One scoring-log volume per stage, kept across deployments.
        volumes={f"{container_name(settings, stage)}-scoring-log": {
            "bind": "/var/log/scoring", "mode": "rw"}},
    )


def container_environment(settings: Settings) -> dict[str, str]:
    """What a stage container needs beyond the image: where to ship its scoring log.

    The storage credentials are passed by name from this process's
    environment (the workflow maps them from secrets), never baked in.
    """
    if not settings.scoring_log_uri:
        return {}
    environment = {"MLOPS_SCORING_LOG_URI": settings.scoring_log_uri}
    for name in settings.scoring_log_credentials:
        if os.environ.get(name):
            environment[name] = os.environ[name]
    return environment


def _url(settings: Settings, port: int | str) -> str:
    return f"http://{settings.engine_host}:{port}"


def _get(client, name: str):
    from docker.errors import NotFound

    try:
        return client.containers.get(name)
    except NotFound:
        return None


def image_for(registry, version: int, client=None) -> str:
    """The image ID recorded for ``version``, pulled by digest if it is not local.

    Raises:
        ReleaseError: If no image was built for it, or the pulled image differs.
    """
    from docker.errors import ImageNotFound

    tags = registry.get_version(version).tags
    image_id = tags.get("image.id")
    if not image_id:
        raise ReleaseError(
            f"no image was built for version {version}: run `mlops release --version {version}`"
        )
    if client is None:
        return image_id
    try:
        client.images.get(image_id)
        return image_id
    except ImageNotFound:
        pass
    ref = tags.get("image.ref")
    if not ref:
        raise ReleaseError(
            f"image {image_id[:19]} of version {version} is not on this engine and was never "
            "pushed: run `mlops push` where it was built, or `mlops release --rebuild`"
        )
    pulled = client.images.pull(ref)
    if pulled.id != image_id:
        raise ReleaseError(f"{ref} is image {pulled.id[:19]}, expected {image_id[:19]}")
    return image_id


def push_image(settings: Settings, registry, version: int, client=None) -> str:
    """Push the version's image to ``MLOPS_IMAGE_REGISTRY``, tagged v<version> and commit.

    Returns:
        The pushed image's digest reference (``repo@sha256:...``), also recorded
        on the model version as tag ``image.ref`` so another machine can pull
        exactly this image.
    """
    if not settings.image_registry:
        raise UsageError("set MLOPS_IMAGE_REGISTRY to push, e.g. ghcr.io/<owner>")
    client = client or docker_client()
    image = client.images.get(image_for(registry, version, client))
    # Registries such as GHCR want lower-case repository names.
    repository = f"{settings.image_registry.rstrip('/')}/{settings.image_name}".lower()
    commit = registry.get_version(version).tags.get("git_commit", "unknown")[:12]
    for tag in dict.fromkeys([f"v{version}", commit]):
        image.tag(repository, tag)
        for line in client.images.push(repository, tag=tag, stream=True, decode=True):
            if "error" in line:
                raise ReleaseError(f"push of {repository}:{tag} failed: {line['error']}")
    image.reload()
    refs = [d for d in image.attrs.get("RepoDigests", []) if d.startswith(repository + "@")]
    if not refs:
        raise ReleaseError(f"{repository} has no digest for image {image.id[:19]} after the push")
    registry.client.set_model_version_tag(registry.name, str(version), "image.ref", refs[0])
    return refs[0]


def deploy_qa(settings: Settings, registry, version: int, image_id: str, client=None) -> Deployment:
    """Replace the QA container with ``image_id``, smoke-test it, set alias ``qa``."""
    client = client or docker_client()
    name = container_name(settings, "qa")
    old = _get(client, name)
    if old is not None:
        old.remove(force=True)
    _start(client, settings, "qa", image_id, version, name)
    url = _url(settings, settings.qa_port)
    rows = smoke_payload(settings)
    try:
        smoke_test(url, version, expected_predictions(registry, version, rows), rows,
                   settings.smoke_deadline)
    except ReleaseError as exc:
        raise ReleaseError(f"QA smoke test failed for version {version}: {exc}") from None
    registry.client.set_registered_model_alias(registry.name, "qa", str(version))
    return Deployment("qa", version, name, image_id, url)


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


def promote(settings: Settings, registry, version: int | None = None, client=None) -> Deployment:
    """Run the image that passed QA in production; restore the old one if it fails.

    Args:
        version: Version to promote; defaults to the one with alias ``qa``.

    Raises:
        ReleaseError: If the smoke test fails. The previous production
            container is running again and the ``production`` alias is unchanged.
    """
    check_lasting_target(settings)
    client = client or docker_client()
    version = version or registry.alias_version("qa")
    if version is None:
        raise ReleaseError("no version has passed QA yet: run `mlops release` first")
    image_id = image_for(registry, version, client)
    deployment = _switch_production(settings, registry, client, version, image_id)
    history = _history(registry) + [version]
    registry.client.set_registered_model_tag(registry.name, HISTORY_TAG, json.dumps(history))
    return deployment


def rollback(settings: Settings, registry, client=None) -> Deployment:
    """Return production to the version promoted before the current one."""
    check_lasting_target(settings)
    client = client or docker_client()
    history = _history(registry)
    current = registry.alias_version("production")
    if current is not None and history and history[-1] != current:
        history.append(current)
    if len(history) < 2:
        raise ReleaseError("nothing to roll back to: production has had only one version")
    previous = history[-2]
    image_id = image_for(registry, previous, client)
    deployment = _switch_production(settings, registry, client, previous, image_id)
    registry.client.set_registered_model_tag(registry.name, HISTORY_TAG, json.dumps(history[:-1]))
    return deployment


def _history(registry) -> list[int]:
    tags = registry.client.get_registered_model(registry.name).tags or {}
    return [int(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]


def _switch_production(settings, registry, client, version: int, image_id: str) -> Deployment:
    """Smoke-test ``image_id`` beside production, then swap it in.

    The candidate first runs on a spare port while the current production
    container keeps serving; only a candidate that passes replaces it. The
    swap itself is smoke-tested again, with the old container kept stopped as a
    standby until the new one passes.
    """
    name = container_name(settings, "production")
    rows = smoke_payload(settings)
    expected = expected_predictions(registry, version, rows)
    current = _get(client, name)
    serving = (
        f"production is untouched and still serves version {current.labels.get(VERSION_LABEL)}"
        if current is not None else "nothing was deployed"
    )

    candidate = _start(client, settings, "candidate", image_id, version, f"{name}-candidate")
    try:
        smoke_test(_published_url(settings, candidate), version, expected, rows,
                   settings.smoke_deadline)
    except ReleaseError as exc:
        raise ReleaseError(
            f"production smoke test failed for version {version}: {exc}; {serving}; "
            "alias 'production' unchanged"
        ) from None
    finally:
        candidate.remove(force=True)

    standby = f"{name}-previous"
    stale = _get(client, standby)
    if stale is not None:
        stale.remove(force=True)
    if current is not None:
        current.stop(timeout=10)
        current.rename(standby)
    url = _url(settings, settings.production_port)
    try:
        _start(client, settings, "production", image_id, version, name)
        smoke_test(url, version, expected, rows, settings.smoke_deadline)
    except Exception as exc:
        failed = _get(client, name)
        if failed is not None:
            failed.remove(force=True)
        if current is not None:
            current.rename(name)
            current.start()
            wait_healthy(url, settings.smoke_deadline)
        raise ReleaseError(
            f"version {version} passed its smoke test but failed on the production port: {exc}; "
            "the previous production container is serving again; alias 'production' unchanged"
        ) from None
    if current is not None:
        current.remove(force=True)
    registry.client.set_registered_model_alias(registry.name, "production", str(version))
    return Deployment("production", version, name, image_id, url)


def _published_url(settings: Settings, container) -> str:
    container.reload()
    binding = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]
    return _url(settings, binding["HostPort"])


def deployments(settings: Settings, client) -> list[dict]:
    """What runs where: each stage container's version, image and health."""
    found = []
    for container in client.containers.list(all=True, filters={"label": STAGE_LABEL}):
        state = container.attrs.get("State", {})
        found.append(
            {
                "container": container.name,
                "stage": container.labels.get(STAGE_LABEL),
                "version": container.labels.get(VERSION_LABEL),
                "image": container.image.id[:19] if container.image else "",
                "status": state.get("Status", container.status),
                "health": state.get("Health", {}).get("Status", ""),
            }
        )
    return sorted(found, key=lambda d: d["container"])

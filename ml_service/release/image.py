"""The scoring image: gather wheels on the host, build with no network, push by digest.

Each build is recorded on the model version (tags ``image.id``/``image.tag``; a
push adds ``image.ref``, the pushed digest), so promotion can run the exact
image that passed QA on any engine.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_service.training.data import check_rows
from ml_service.registry.export import export_bundle
from ml_service.errors import MlopsError, UsageError
from ml_service.release.ports import ReleaseError
from ml_service.release.engine import docker_client
from ml_service.release.supply_chain import DockerInspector, sha256
from ml_service.settings import Settings
from ml_service import signing
from ml_service.spec import ModelSpec

if TYPE_CHECKING:
    from ml_service.registry import Registry

logger = logging.getLogger(__name__)

PROJECT = Path(__file__).resolve().parents[2]
DOCKERFILE = PROJECT / "environments" / "scoring" / "Dockerfile"
SCORING_REQUIREMENTS = PROJECT / "environments" / "scoring" / "requirements.txt"
SCORING_SKLEARN_REQUIREMENTS = PROJECT / "environments" / "scoring" / "requirements-sklearn.txt"
#: cyclonedx-py, run in the build stage to write the image's SBOM.
SBOM_REQUIREMENTS = PROJECT / "environments" / "scoring" / "sbom-requirements.txt"


def gather_wheels(settings: Settings, runtime: str = "onnx") -> dict[str, Path]:
    """Download the scoring image's wheels on the host, checked against their hashes.

    The requirements are :func:`requirements_for` the bundle's runtime and, for
    the SBOM tool of the build stage, ``sbom-requirements.txt`` (exported from
    uv.lock by ``make environments``); the project's own wheel is built from
    the checkout. Each goes to a directory of its own, so that the Docker
    layers installing the (rarely changing) dependencies are reused from the
    engine's build cache when only the project or the model changed.

    Returns:
        The directories ``wheels`` (dependencies), ``sbom-wheels`` and
        ``project`` (the project wheel). The first two are kept between
        builds, so only new pins are downloaded.
    """
    build = settings.build_dir.resolve()
    dirs = {"wheels": build / f"wheels-{runtime}", "sbom-wheels": build / "sbom-wheels",
            "project": build / "project"}
    arch = platform.machine()
    for requirements, name in ((requirements_for(runtime), "wheels"),
                               (SBOM_REQUIREMENTS, "sbom-wheels")):
        dirs[name].mkdir(parents=True, exist_ok=True)
        _run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--require-hashes", "--no-deps", "--only-binary=:all:",
             "--python-version", settings.image_python, "--implementation", "cp",
             "--platform", f"manylinux_2_17_{arch}", "--platform", f"manylinux2014_{arch}",
             "--platform", f"manylinux_2_28_{arch}", "--platform", f"manylinux_2_34_{arch}",
             "-r", str(requirements), "--dest", str(dirs[name])],
            f"download the {name}",
        )
    if (build / "wheels").is_dir():  # where older builds kept every wheel
        shutil.rmtree(build / "wheels")
    if dirs["project"].exists():
        shutil.rmtree(dirs["project"])
    _run(
        [str(Path(sys.executable).parent / "uv"), "build", "--wheel", "--quiet",
         "--out-dir", str(dirs["project"]), str(PROJECT)],
        "build the project wheel",
    )
    return dirs


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise MlopsError(f"could not {what}: " + " | ".join(tail))


def ensure_base_image(client: Any, reference: str) -> str:
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
        return str(client.images.get(reference).id)
    except ImageNotFound:
        pass
    logger.info("base image %s is not on the engine: pulling it", reference)
    try:
        return str(client.images.pull(reference).id)
    except DockerException as exc:
        reason = getattr(exc, "explanation", None) or str(exc)
        raise MlopsError(
            f"base image {reference} is not on this Docker engine and could not be pulled "
            f"({reason}); on a host without registry access build one with "
            "infra/base-image/build.sh and set MLOPS_BASE_IMAGE to it"
        ) from None


def requirements_for(runtime: str) -> Path:
    """The image's requirements: onnxruntime for an ONNX bundle, else scikit-learn and skops."""
    return SCORING_REQUIREMENTS if runtime == "onnx" else SCORING_SKLEARN_REQUIREMENTS


def build_image(settings: Settings, registry: Registry, spec: ModelSpec, version: int,
                client: Any = None) -> tuple[str, str]:
    """Build the scoring image for ``version`` with no network during the build.

    Returns:
        (image ID, tag). Both are also recorded as tags on the model version.
    """
    from docker.errors import BuildError

    client = client or docker_client()
    ensure_base_image(client, settings.base_image)
    context = settings.build_dir.resolve() / "context"
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    metadata = export_bundle(registry, version, context / "bundle", spec,
                             check=check_rows(settings, spec))
    runtime = metadata.runtime_kind
    wheel_dirs = gather_wheels(settings, runtime)
    shutil.copy2(DOCKERFILE, context / "Dockerfile")
    shutil.copy2(requirements_for(runtime), context / "requirements.txt")
    shutil.copy2(SBOM_REQUIREMENTS, context / "sbom-requirements.txt")
    for name, directory in wheel_dirs.items():
        shutil.copytree(directory, context / name)
    (context / "trusted").mkdir()
    for path in signing.trusted_keys(settings.signing_trusted).values():
        shutil.copy2(path, context / "trusted" / path.name)

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
                "MODEL_RUNTIME": runtime,
            },
        )
    except BuildError as exc:
        log = "".join(chunk.get("stream", "") for chunk in exc.build_log)[-2000:]
        raise MlopsError(f"docker build failed: {exc.msg}\n{log}") from None
    logger.info("built %s (%s, model run by %s) in %.1fs", tag, image.id, runtime,
                time.perf_counter() - started)
    registry.set_version_tag(version, "image.id", image.id)
    registry.set_version_tag(version, "image.tag", tag)
    store_sbom(settings, registry, version, DockerInspector(client).sbom(image.id))
    return str(image.id), tag


def store_sbom(settings: Settings, registry: Registry, version: int, sbom: bytes) -> Path:
    """Keep the image's SBOM with the model version and in ``reports/sbom.cdx.json``.

    The version gets the run artifact ``sbom/scoring.cdx.json`` and the tag
    ``image.sbom.sha256``; the report file is what the release workflow attests.
    """
    report = write_sbom_report(settings, sbom)
    registry.log_version_file(version, "scoring.cdx.json", sbom, "sbom")
    registry.set_version_tag(version, "image.sbom.sha256", sha256(sbom))
    components = len(json.loads(sbom).get("components", []))
    logger.info("SBOM of version %s's image: %d components, %s", version, components, report)
    return report


def push_image(settings: Settings, registry: Registry, version: int, client: Any = None) -> str:
    """Push the version's image to ``MLOPS_IMAGE_REGISTRY``, tagged v<version> and commit.

    Returns:
        The pushed image's digest reference (``repo@sha256:...``), also recorded
        on the model version as tag ``image.ref`` so another machine can pull
        exactly this image.
    """
    if not settings.image_registry:
        raise UsageError("set MLOPS_IMAGE_REGISTRY to push, e.g. ghcr.io/<owner>")
    client = client or docker_client()
    tags = registry.version_tags(version)
    image_id = tags.get("image.id")
    if not image_id:
        raise ReleaseError(
            f"no image was built for version {version}: run `mlops release --version {version}`")
    image = client.images.get(image_id)
    # Registries such as GHCR want lower-case repository names.
    repository = f"{settings.image_registry.rstrip('/')}/{settings.image_name}".lower()
    commit = tags.get("git_commit", "unknown")[:12]
    for tag in dict.fromkeys([f"v{version}", commit]):
        image.tag(repository, tag)
        for line in client.images.push(repository, tag=tag, stream=True, decode=True):
            if "error" in line:
                raise ReleaseError(f"push of {repository}:{tag} failed: {line['error']}")
    image.reload()
    refs = [d for d in image.attrs.get("RepoDigests", []) if d.startswith(repository + "@")]
    if not refs:
        raise ReleaseError(f"{repository} has no digest for image {image.id[:19]} after the push")
    registry.set_version_tag(version, "image.ref", refs[0])
    sbom = DockerInspector(client).sbom(image.id)
    if tags.get("image.sbom.sha256") and sha256(sbom) != tags["image.sbom.sha256"]:
        raise ReleaseError(f"the SBOM in image {image.id[:19]} differs from the one recorded "
                           f"when version {version}'s image was built")
    write_sbom_report(settings, sbom)
    return str(refs[0])


def write_sbom_report(settings: Settings, sbom: bytes) -> Path:
    """Write the image's SBOM to ``reports/sbom.cdx.json`` (what the workflow attests)."""
    report = settings.reports_dir / "sbom.cdx.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_bytes(sbom)
    return report


def image_exists(client: Any, image_id: str) -> bool:
    """Whether the engine has ``image_id`` (an ID: a name or tag in the registry's record
    is never looked up, the image is built again)."""
    from docker.errors import ImageNotFound

    from ml_service.release.supply_chain import is_image_id

    if not is_image_id(image_id):
        logger.warning("the registry records image %r for the version, which is no image ID: "
                       "building it again", image_id[:80])
        return False
    try:
        client.images.get(image_id)
        return True
    except ImageNotFound:
        return False

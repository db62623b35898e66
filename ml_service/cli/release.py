"""Release commands: image, release, push, remote-engine, promote, rollback."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ml_service.cli.common import (
    VersionOption,
    append,
    chosen_version,
    connected,
    err,
    guarded,
    out,
    settings as load_settings,
)

if TYPE_CHECKING:
    from ml_service.registry import Registry
    from ml_service.release.ports import DeployTarget
    from ml_service.release.promotion import SmokeFactory
    from ml_service.release.supply_chain import ImageInspector
    from ml_service.settings import Settings
    from ml_service.spec import ModelSpec

app = typer.Typer()

DigestOption = Annotated[Optional[str], typer.Option(
    "--digest", help="The sha256:... digest the release run pushed for --version (its QA "
    "job's output); refused unless the registry recorded it as that version's image.")]


def _pinned_version(version: int | None, digest: str | None) -> None:
    """A digest names an image, not a model version: it needs --version beside it."""
    from ml_service.errors import UsageError
    from ml_service.release.supply_chain import check_digest

    if digest is None:
        return
    if version is None:
        raise UsageError("--digest needs --version (make: DIGEST needs VERSION): a digest alone "
                         "does not name a model version; nothing was done")
    check_digest(digest)


def _target(settings: Settings, client: Any = None) -> DeployTarget:
    """The deploy target MLOPS_DEPLOY_TARGET names."""
    from ml_service.release.docker_target import DockerTarget
    from ml_service.release.kubernetes_target import KubernetesTarget

    if settings.deploy_target == "kubernetes":
        return KubernetesTarget(settings)
    return DockerTarget(settings, client)


def _inspector(settings: Settings) -> ImageInspector:
    """Reads the bundle, SBOM and model of an image on the Docker engine (DOCKER_HOST),
    and verifies the bundle against the keys the settings trust."""
    from ml_service.release.supply_chain import DockerInspector

    return DockerInspector(trusted=settings.signing_trusted)


def _smoke(settings: Settings, spec: ModelSpec, registry: Registry) -> SmokeFactory:
    from ml_service.release.smoke import smoke_check

    return lambda version: smoke_check(registry, spec, version, settings.smoke_deadline)


@app.command()
@guarded
def image(version: VersionOption = None) -> None:
    """Build the scoring image for a version (hermetic: wheels gathered first)."""
    from ml_service.release.image import build_image

    settings, spec, registry = connected()
    chosen = chosen_version(registry, version)
    started = time.perf_counter()
    image_id, tag = build_image(settings, registry, spec, chosen)
    out.print(f"built {tag} ({image_id[:19]}) in {time.perf_counter() - started:.1f}s")


@app.command()
@guarded
def release(
    version: VersionOption = None,
    rebuild: Annotated[bool, typer.Option(help="Build even if the version has an image.")] = False,
) -> None:
    """Build the image (if needed), run it as QA, smoke-test it, set alias 'qa'."""
    from ml_service.release.engine import docker_client
    from ml_service.release.image import build_image, image_exists, push_image
    from ml_service.release.promotion import release_qa
    from ml_service import signing
    from ml_service.release.supply_chain import DockerInspector

    settings, spec, registry = connected()
    client = docker_client()
    chosen = chosen_version(registry, version)
    image_id = registry.version_tags(chosen).get("image.id")
    if rebuild or not image_id or not image_exists(client, image_id):
        image_id, _ = build_image(settings, registry, spec, chosen, client)
    target = _target(settings, client)
    image = image_id
    if settings.deploy_target == "kubernetes":  # a cluster pulls by digest: push first
        image = push_image(settings, registry, chosen, client)
    inspector = DockerInspector(client, settings.signing_trusted, signing.signer(settings))
    deployment = release_qa(registry, target, chosen, image, _smoke(settings, spec, registry),
                            inspector)
    out.print(
        f"[green]QA passed[/]: version {chosen} serves at {deployment.url} "
        f"({deployment.container}, image {image[:60]}); alias 'qa' set"
    )


@app.command()
@guarded
def card(
    version: VersionOption = None,
    markdown: Annotated[Optional[Path], typer.Option(
        help="Also append the card here ($GITHUB_STEP_SUMMARY).")] = None,
    json_out: Annotated[Optional[Path], typer.Option(help="Write the card's JSON here.")] = None,
) -> None:
    """Print the model card of a version (default: the one with alias 'qa', else champion)."""
    import sys
    import tempfile

    from ml_service import model_card
    from ml_service.errors import MlopsError
    from ml_service.registry.signed import download_verified

    _, _, registry = connected()
    qa = registry.alias_version("qa")
    chosen = version or qa or chosen_version(registry, None)
    what = f"{registry.name} version {chosen}"
    if version is None:  # say which card this is, and why that one
        print(f"the model card of {what}: " + (
            "the version with alias 'qa'" if qa else
            "no version has passed QA yet (alias 'qa'), so the champion's"), file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        signed = download_verified(registry, chosen, Path(tmp))  # the card is signed with it
        if not (signed / model_card.JSON_FILE).is_file():
            raise MlopsError(f"{what} has no model card: it was registered before cards "
                             "existed; register a new version to get one")
        text = (signed / model_card.MARKDOWN_FILE).read_text()
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_bytes((signed / model_card.JSON_FILE).read_bytes())
    append(markdown, text)
    out.print(text, markup=False, highlight=False)


@app.command()
@guarded
def push(
    version: VersionOption = None,
    outputs: Annotated[Optional[Path], typer.Option(
        help="Append version=<n>, image=<name> and digest=sha256:... here "
        "($GITHUB_OUTPUT).")] = None,
) -> None:
    """Push a version's image to MLOPS_IMAGE_REGISTRY (tags v<version> and the commit).

    Also writes the image's SBOM to reports/sbom.cdx.json (checked against
    the hash recorded at build), the file the release workflow attests.
    """
    from ml_service.release.image import push_image

    settings, _, registry = connected()
    chosen = chosen_version(registry, version, alias="qa")
    ref = push_image(settings, registry, chosen)
    name, digest = ref.split("@", 1)
    append(outputs, f"version={chosen}\nimage={name}\ndigest={digest}\n")
    out.print(f"pushed version {chosen}: {ref}")


@app.command("verify-attestation")
@guarded
def verify_attestation(version: VersionOption = None, digest: DigestOption = None) -> None:
    """Verify GitHub's provenance and SBOM attestations of the QA version's pushed image.

    With --version and --digest, the image verified is <name>@<digest>, and
    only if the registry recorded that digest as the version's pushed image.
    The attestations must be signed by this repository's release workflow
    running on MLOPS_SOURCE_REF (default refs/heads/main) and, when this job
    runs on a GitHub-hosted runner, not on a self-hosted one.

    Needs GITHUB_REPOSITORY (set in Actions) and an authenticated gh (GH_TOKEN).
    """
    from ml_service.errors import UsageError
    from ml_service.release.ports import ReleaseError
    from ml_service.release.supply_chain import pinned_image, verify_attestations

    _pinned_version(version, digest)
    repository = os.environ.get("GITHUB_REPOSITORY", "")
    if "/" not in repository:
        raise UsageError("set GITHUB_REPOSITORY=owner/name: attestations exist only for images "
                         "the release workflow pushed on GitHub")
    settings, _, registry = connected()
    chosen = chosen_version(registry, version, alias="qa")
    tags = registry.version_tags(chosen)
    if digest is not None:
        ref = pinned_image(chosen, tags, digest)
    else:
        ref = tags.get("image.ref", "")
        if not ref:
            raise ReleaseError(f"version {chosen}'s image was never pushed: nothing to verify")
    for line in verify_attestations(ref, repository, settings.source_ref,
                                    settings.hosted_builds):
        out.print(line, markup=False)


@app.command("remote-engine")
@guarded
def remote_engine() -> None:
    """Install the SSH key and known host of an ssh:// DOCKER_HOST, then check the engine.

    Reads DOCKER_SSH_KEY and DOCKER_SSH_KNOWN_HOSTS (secrets in Actions). Does
    nothing when DOCKER_HOST is unset or not ssh://. In Actions the private key
    goes under $RUNNER_TEMP; ~/.ssh gets the host key and a Host block naming it.
    """
    from ml_service.release.engine import docker_client
    from ml_service.release.remote_engine import install_identity, ssh_target

    settings = load_settings()
    key = settings.docker_ssh_key.get_secret_value() if settings.docker_ssh_key else None
    runner_temp = os.environ.get("RUNNER_TEMP")  # Actions: emptied after the job
    out.print(install_identity(settings.docker_host, key, settings.docker_ssh_known_hosts,
                               Path.home() / ".ssh",
                               Path(runner_temp) / "ssh" if runner_temp else None),
              markup=False)
    if ssh_target(settings.docker_host) is not None:
        version = docker_client().version().get("Version", "?")
        out.print(f"Docker engine {version} answers at {settings.docker_host}; its "
                  f"containers are smoke-tested at {settings.engine_host}", markup=False)


@app.command()
@guarded
def promote(
    version: VersionOption = None,
    digest: DigestOption = None,
    markdown: Annotated[Optional[Path], typer.Option(
        help="Append the canary's steps here ($GITHUB_STEP_SUMMARY).")] = None,
) -> None:
    """Run the image that passed QA in production; roll back if its smoke test fails.

    Without --version, the version with alias 'qa'. With --version and
    --digest (what a release run's production job passes), exactly that
    version's pushed image <name>@<digest>, refused unless the registry
    recorded that digest for it and it passed QA. With MLOPS_CANARY_STEPS (on
    Kubernetes), the new version first takes those shares of the traffic, each
    judged by Prometheus against the running one, and is removed at the first
    failed check.
    """
    from ml_service.errors import UsageError
    from ml_service.release import canary, promotion
    from ml_service.release.kubernetes_target import KubernetesTarget

    _pinned_version(version, digest)
    settings, spec, registry = connected()
    plan = canary.Plan.of(settings)
    if plan is not None and settings.deploy_target != "kubernetes":
        raise UsageError("MLOPS_CANARY_STEPS needs the Kubernetes target "
                         "(MLOPS_DEPLOY_TARGET=kubernetes): a Docker host promotes in one step; "
                         "nothing was deployed")
    if settings.require_shadow and settings.deploy_target != "kubernetes":
        raise UsageError("MLOPS_REQUIRE_SHADOW needs the Kubernetes target: a Docker host "
                         "runs no shadow, so no version could pass; nothing was deployed")
    target = (KubernetesTarget(settings, plan, markdown) if plan is not None
              else _target(settings))
    deployment = promotion.promote(registry, target, _smoke(settings, spec, registry),
                                   version, _inspector(settings), digest,
                                   settings.require_shadow)
    if isinstance(target, KubernetesTarget):  # its shadow has served its purpose
        from ml_service.release import shadow
        from ml_service.release.ports import ReleaseError

        try:
            if shadow.running_version(target) == deployment.version:
                shadow.stop(target)
                out.print(f"the shadow of version {deployment.version} was removed")
        except ReleaseError as exc:  # promoted all the same
            err.print(f"warning: the shadow of version {deployment.version} may still run "
                      f"(make shadow-stop): {exc}", markup=False)
    image = deployment.image_id
    out.print(
        f"[green]promoted[/] version {deployment.version} to production at {deployment.url} "
        f"(image {image if '@' in image else image[:19]}); alias 'production' set"
    )


@app.command()
@guarded
def rollback() -> None:
    """Return production to the previously promoted version."""
    from ml_service.release import promotion

    settings, spec, registry = connected()
    deployment = promotion.rollback(registry, _target(settings), _smoke(settings, spec, registry),
                                    _inspector(settings))
    out.print(f"[green]rolled back[/]: production serves version {deployment.version} again")


@app.command()
@guarded
def kubeconfig() -> None:
    """Install KUBE_CONFIG_DATA as the job's kubeconfig, then check the cluster answers.

    For the Kubernetes target in Actions (KUBE_CONFIG_DATA is a secret of the
    production environment); does nothing when KUBE_CONFIG_DATA is unset. The
    file goes to KUBECONFIG if set; in Actions to $RUNNER_TEMP/kubeconfig (the
    runner empties it after the job: nothing stays in a self-hosted runner's
    home), with KUBECONFIG pointed at it for the later steps ($GITHUB_ENV);
    elsewhere to ~/.kube/config.
    """
    from ml_service.release.cluster_access import install_kubeconfig
    from ml_service.release.kubernetes_target import KubernetesTarget

    settings = load_settings()
    data = settings.kube_config_data.get_secret_value() if settings.kube_config_data else None
    runner_temp = os.environ.get("RUNNER_TEMP")
    if os.environ.get("KUBECONFIG"):
        target = Path(os.environ["KUBECONFIG"])
    elif runner_temp and data:
        target = Path(runner_temp) / "kubeconfig"
        os.environ["KUBECONFIG"] = str(target)  # for the access check below
        append(Path(os.environ["GITHUB_ENV"]) if os.environ.get("GITHUB_ENV") else None,
               f"KUBECONFIG={target}\n")
    else:
        target = Path.home() / ".kube" / "config"
    out.print(install_kubeconfig(data, target), markup=False)
    if settings.deploy_target == "kubernetes":
        out.print(KubernetesTarget(settings).check_access("production"), markup=False)

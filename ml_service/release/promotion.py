"""The promotion state machine: QA, production, rollback.

It talks to the outside world only through the two ports of
:mod:`ml_service.release.ports`, so every path (first promotion, replacement,
a candidate failing its smoke test, rollback, rollback with no history) is
unit-tested with fakes. The state lives in the registry:

- alias ``qa``: the version whose image passed the QA smoke test;
- alias ``production``: the version serving in production, and the registered
  model tag ``production.history`` (versions in promotion order) for rollback.

Promotion runs the exact image that passed QA (the one recorded on the
version), never a rebuild. With an :class:`~ml_service.release.supply_chain.ImageInspector`,
QA and production first verify the image's bundle against the signing keys
the repository trusts (and that it is the version being deployed); QA also
signs a record of the image it passed (its ID, the hashes of its SBOM and
model file), and production (or a rollback) refuses, before deploying
anything, unless that record verifies against the trusted keys and the image
about to run matches it.

A release run names what it deploys: :func:`promote` with a version *and* the
digest its QA job pushed deploys ``<name>@<digest>`` of exactly that version,
and refuses (before deploying anything) unless the registry recorded that very
digest as the version's pushed image and QA recorded its evidence. So a
later run moving alias ``qa`` while an earlier one waits for approval cannot
change what the earlier approval deploys.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from ml_service.errors import UsageError
from ml_service.release.ports import (
    CanaryAborted,
    DeployTarget,
    Deployment,
    ReleaseError,
    ReleaseRegistry,
    SmokeCheck,
)
from ml_service.release.supply_chain import (
    ImageInspector,
    check_evidence,
    pinned_image,
    record_qa,
    require_qa_record,
)

logger = logging.getLogger(__name__)

HISTORY_TAG = "production.history"
#: The last shadow report's verdict on a version (passed or flagged).
SHADOW_VERDICT = "shadow.verdict"

#: Builds the smoke check of a version (what its predictions must be).
SmokeFactory = Callable[[int], SmokeCheck]


def release_qa(registry: ReleaseRegistry, target: DeployTarget, version: int, image: str,
               smoke_for: SmokeFactory, inspector: ImageInspector | None = None) -> Deployment:
    """Replace the QA instance with ``image``, smoke-test it, then set alias ``qa``.

    With ``inspector``, the signed record of the image that passed (see
    :mod:`ml_service.release.supply_chain`) is recorded on the version.

    Raises:
        ReleaseError: If the smoke test fails; alias ``qa`` is unchanged.
    """
    if inspector is not None:
        inspector.check_signed(image, registry.name, version)
    try:
        deployment = target.deploy("qa", version, image, smoke_for(version),
                                   keep_previous=False)
    except ReleaseError as exc:
        raise ReleaseError(f"QA smoke test failed for version {version}: {exc}") from None
    if inspector is not None:
        evidence = inspector.evidence(image)
        record_qa(registry.set_version_tag, version, evidence,
                  inspector.seal(registry.name, version, evidence))
    registry.set_alias("qa", version)
    return deployment


def promote(registry: ReleaseRegistry, target: DeployTarget, smoke_for: SmokeFactory,
            version: int | None = None, inspector: ImageInspector | None = None,
            digest: str | None = None, require_shadow: bool = False) -> Deployment:
    """Run the image that passed QA in production; keep the old one if it fails.

    Args:
        version: Version to promote; defaults to the one with alias ``qa``.
        inspector: Checks the image against what QA recorded before deploying.
        digest: The digest (``sha256:...``) the release run pushed for
            ``version`` (required with it): the image deployed is then
            ``<name>@<digest>``, which the registry must have recorded as
            ``version``'s pushed image (tag ``image.ref``).
        require_shadow: Refuse unless ``version``'s last shadow report passed
            (tag ``shadow.verdict``).

    Raises:
        UsageError: If ``digest`` is given without ``version``, or malformed.
        ReleaseError: If no version passed QA, the image is not the one QA
            recorded (or not ``digest``), or the smoke test fails. The
            previous production instance is serving and alias ``production``
            is unchanged.
    """
    if digest is not None and version is None:
        raise UsageError("--digest needs --version: a digest alone does not name a model "
                         "version; nothing was deployed")
    target.ensure_lasting()
    version = version or registry.alias_version("qa")
    if version is None:
        raise ReleaseError("no version has passed QA yet: run `mlops release` first")
    if require_shadow:
        verdict = registry.version_tags(version).get(SHADOW_VERDICT)
        if verdict != "passed":
            found = ("no shadow report" if verdict is None
                     else f"a shadow report that was {verdict}")
            raise ReleaseError(
                f"version {version} has {found} and MLOPS_REQUIRE_SHADOW is on: run it as a "
                "shadow (mlops shadow) and pass mlops shadow-report first; nothing was deployed")
    history = production_history(registry)  # before deploying: a bad record changes nothing
    deployment = _deploy_production(registry, target, smoke_for, version, inspector, digest)
    if not history or history[-1] != version:
        history.append(version)
    registry.set_model_tag(HISTORY_TAG, json.dumps(history))
    return deployment


def rollback(registry: ReleaseRegistry, target: DeployTarget,
             smoke_for: SmokeFactory, inspector: ImageInspector | None = None) -> Deployment:
    """Return production to the version promoted before the current one.

    Raises:
        ReleaseError: If production has had fewer than two versions, or the
            previous version fails its smoke test (production unchanged).
    """
    target.ensure_lasting()
    history = production_history(registry)
    current = registry.alias_version("production")
    if current is not None and (not history or history[-1] != current):
        history.append(current)
    if len(history) < 2:
        raise ReleaseError("nothing to roll back to: production has had only one version"
                           if history else "nothing to roll back to: nothing was promoted yet")
    previous = history[-2]
    deployment = _deploy_production(registry, target, smoke_for, previous, inspector)
    registry.set_model_tag(HISTORY_TAG, json.dumps(history[:-1]))
    return deployment


def production_history(registry: ReleaseRegistry) -> list[int]:
    """Versions promoted to production, oldest first.

    Raises:
        ReleaseError: If the registry's record is not a list of versions.
    """
    text = registry.model_tag(HISTORY_TAG) or "[]"
    try:
        history = json.loads(text)
        return [int(v) for v in history]
    except (ValueError, TypeError):
        raise ReleaseError(f"the registry's {HISTORY_TAG} is not a list of versions "
                           f"({text[:80]!r}); nothing was deployed") from None


def checked_image(registry: ReleaseRegistry, target: DeployTarget, version: int,
                  inspector: ImageInspector | None, digest: str | None = None) -> str:
    """The image of ``version`` that passed QA, checked before anything runs it.

    Raises:
        ReleaseError: If there is none, it is not ``digest``, its bundle is not
            signed as ``version``, or it is not the image QA recorded.
    """
    tags = registry.version_tags(version)
    if digest is None:
        image = target.resolve_image(version, tags)
    else:  # exactly the digest the release run pushed, and only if it is this version's
        image = pinned_image(version, tags, digest)
        require_qa_record(version, tags)
    if inspector is not None:
        inspector.check_signed(image, registry.name, version)
        signed = inspector.signed_evidence(registry.name, version, tags)
        check_evidence(version, signed, inspector.evidence(image), image)
    return image


def _deploy_production(registry: ReleaseRegistry, target: DeployTarget,
                       smoke_for: SmokeFactory, version: int,
                       inspector: ImageInspector | None, digest: str | None = None) -> Deployment:
    image = checked_image(registry, target, version, inspector, digest)
    try:
        deployment = target.deploy("production", version, image, smoke_for(version),
                                   keep_previous=True)
    except CanaryAborted as exc:
        raise ReleaseError(f"the canary of version {version} was stopped: {exc}; alias "
                           "'production' unchanged") from None
    except ReleaseError as exc:
        raise ReleaseError(f"production smoke test failed for version {version}: {exc}; "
                           "alias 'production' unchanged") from None
    registry.set_alias("production", version)
    logger.info("production serves version %s", version)
    return deployment

"""What an image is made of, recorded at QA and checked before production.

The scoring image carries a CycloneDX SBOM of its Python environment
(written in the build stage by ``cyclonedx-py``, at :data:`SBOM_PATH`) and
the model bundle (:data:`MODEL_DIR`). :class:`DockerInspector` reads both
straight from an image, without running it, and hashes them:

- at build, the SBOM is stored with the model version (run artifact
  ``sbom/scoring.cdx.json``, tag ``image.sbom.sha256``) and written to
  ``reports/sbom.cdx.json`` (the file the release workflow attests);
- when QA passes, the hashes of the image that passed are recorded on the
  version (``qa.sbom.sha256``, ``qa.model.sha256``: the served model file,
  the ONNX form when the bundle has one);
- before production (or a rollback) deploys anything, the image about to run
  is read again and must match that record (:func:`check_evidence`).

In GitHub Actions the production job also verifies GitHub's signed build
provenance and SBOM attestations of the pushed digest (``make
verify-attestation``): that proves where the image was built; this check
proves it is the image QA tested.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
from collections.abc import Mapping
from typing import Any, Protocol

from ml_service.bundle import BundleMetadata
from ml_service.release.ports import ReleaseError

logger = logging.getLogger(__name__)

SBOM_PATH = "/opt/sbom/scoring.cdx.json"
MODEL_DIR = "/opt/model"
#: The evidence keys: recorded as ``qa.<key>`` version tags.
KEYS = ("sbom.sha256", "model.sha256")


class ImageInspector(Protocol):
    """Reads an image's evidence (the port the promotion state machine uses)."""

    def evidence(self, image: str) -> dict[str, str]:
        """SHA-256 of the image's SBOM and model file, by :data:`KEYS`."""


def record_qa(tags_setter: Any, version: int, evidence: Mapping[str, str]) -> None:
    """Record the evidence of the image that passed QA on ``version``."""
    for key in KEYS:
        tags_setter(version, f"qa.{key}", evidence[key])


def check_evidence(version: int, tags: Mapping[str, str], evidence: Mapping[str, str],
                   image: str) -> None:
    """Raise unless ``evidence`` of ``image`` equals what QA recorded for ``version``.

    Raises:
        ReleaseError: If QA recorded nothing, or the SBOM or model differ.
    """
    missing = [key for key in KEYS if not tags.get(f"qa.{key}")]
    if missing:
        raise ReleaseError(
            f"version {version} has no QA record of its image's SBOM and model hash (it "
            f"passed QA before they were recorded): run `mlops release --version {version}` "
            "again; nothing was deployed")
    for key in KEYS:
        what = "SBOM" if key.startswith("sbom") else "model file"
        if evidence[key] != tags[f"qa.{key}"]:
            raise ReleaseError(
                f"image {image[:70]}'s {what} (sha256 {evidence[key][:12]}) is not the one "
                f"QA recorded for version {version} ({tags[f'qa.{key}'][:12]}): refusing to "
                "deploy an image QA did not test; nothing was deployed")


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


class DockerInspector:
    """Reads files out of an image on a Docker engine, without running it.

    Without a client, it connects to the engine (DOCKER_HOST) when first used.
    """

    def __init__(self, client: Any = None):
        self._client = client

    @property
    def client(self) -> Any:
        """The Docker SDK client."""
        if self._client is None:
            from ml_service.release.image import docker_client

            self._client = docker_client()
        return self._client

    def _local(self, image: str) -> str:
        from docker.errors import ImageNotFound

        try:
            self.client.images.get(image)
        except ImageNotFound:
            if "@" not in image:
                raise ReleaseError(f"image {image[:70]} is not on this engine") from None
            self.client.images.pull(image)
        return image

    def read(self, image: str, path: str) -> bytes:
        """The bytes of the file ``path`` inside ``image``.

        Raises:
            ReleaseError: If the image has no such file.
        """
        from docker.errors import NotFound

        container = self.client.containers.create(self._local(image), command=["true"])
        try:
            try:
                stream, _ = container.get_archive(path)
            except NotFound:
                raise ReleaseError(f"image {image[:70]} has no {path}: it was built before "
                                   "images carried an SBOM, or not by this project") from None
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
                member = archive.next()
                handle = archive.extractfile(member) if member is not None else None
                if handle is None:
                    raise ReleaseError(f"{path} in image {image[:70]} is not a file")
                return handle.read()
        finally:
            container.remove(force=True)

    def sbom(self, image: str) -> bytes:
        """The image's CycloneDX SBOM (JSON bytes)."""
        return self.read(image, SBOM_PATH)

    def evidence(self, image: str) -> dict[str, str]:
        """SHA-256 of the image's SBOM and of the model file it serves.

        The served file is the bundle's ONNX form when it has one, else the
        model file; each file in the bundle must match the hash its own
        metadata.json states.

        Raises:
            ReleaseError: If a file is missing, or does not match its metadata.
        """
        try:
            metadata = BundleMetadata(**json.loads(self.read(image, f"{MODEL_DIR}/metadata.json")))
        except (TypeError, ValueError) as exc:
            raise ReleaseError(f"image {image[:70]}'s bundle metadata is not one this version "
                               f"reads: {exc}") from None
        served = ""
        for name, expected in metadata.hashed_files:
            served = sha256(self.read(image, f"{MODEL_DIR}/{name}"))
            if served != expected:
                raise ReleaseError(f"image {image[:70]}'s {name} does not match its own "
                                   f"metadata ({served[:12]} != {str(expected)[:12]})")
        return {"sbom.sha256": sha256(self.sbom(image)), "model.sha256": served}


CYCLONEDX_PREDICATE = "https://cyclonedx.org/bom"
RELEASE_WORKFLOW = ".github/workflows/release.yml"


def verify_attestations(ref: str, repository: str, gh: str = "gh") -> list[str]:
    """Check GitHub's signed provenance and SBOM attestations of the pushed image ``ref``.

    Runs ``gh attestation verify`` twice (SLSA provenance, then the CycloneDX
    SBOM), each time requiring that the attestation was signed by this
    repository's release workflow (``--signer-workflow``): the image is the
    one the release workflow built and pushed, not one pushed by hand.

    Args:
        ref: The pushed image by digest (``registry/name@sha256:...``).
        repository: ``owner/name`` of the repository (``GITHUB_REPOSITORY``).
        gh: The GitHub CLI.

    Returns:
        One line per verified attestation.

    Raises:
        ReleaseError: If ``ref`` is no digest, gh is missing, or a check fails.
    """
    import shutil
    import subprocess

    if "@sha256:" not in ref:
        raise ReleaseError(f"{ref} is not an image digest: attestations are checked by digest")
    if shutil.which(gh) is None:
        raise ReleaseError("the GitHub CLI (gh) is not installed: it verifies the attestations")
    passed = []
    for kind, extra in (("build provenance", []),
                        ("SBOM", ["--predicate-type", CYCLONEDX_PREDICATE])):
        command = [gh, "attestation", "verify", f"oci://{ref}", "--repo", repository,
                   "--signer-workflow", f"{repository}/{RELEASE_WORKFLOW}", *extra]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-4:])
            raise ReleaseError(f"the {kind} attestation of {ref} does not verify ({tail}): "
                               "refusing to deploy an image this repository's release "
                               "workflow did not build; nothing was deployed")
        passed.append(f"{kind} attestation of {ref} verified (signed by {repository}/"
                      f"{RELEASE_WORKFLOW})")
    return passed

"""What an image is made of, recorded at QA and checked before production.

The scoring image carries a CycloneDX SBOM of its Python environment
(written in the build stage by ``cyclonedx-py``, at :data:`SBOM_PATH`) and
the model bundle (:data:`MODEL_DIR`). :class:`DockerInspector` reads both
straight from an image, without running it, and hashes them:

- at build, the SBOM is stored with the model version (run artifact
  ``sbom/scoring.cdx.json``, tag ``image.sbom.sha256``) and written to
  ``reports/sbom.cdx.json`` (the file the release workflow attests);
- when QA passes, the evidence of the image that passed (the image ID, which
  is the digest of its configuration and so covers every layer; the hashes
  of its SBOM and of the served model file, the ONNX form when the bundle has
  one) is signed with the pipeline's key and recorded on the version (tags
  ``qa.record`` and ``qa.record.sig``; ``qa.sbom.sha256`` and
  ``qa.model.sha256`` repeat two of them for people);
- before production (or a rollback) deploys anything, that record must verify
  against the keys the repository trusts and name this model and version, and
  the image about to run is read again and must match it
  (:func:`check_evidence`): a registry writer can rewrite tags, not sign them,
  so an image built on top of a genuine one (same bundle, same SBOM, other
  code) is refused;
- before QA or production deploys an image, its bundle must verify against
  the signing keys this repository trusts (not the ones the image carries)
  and be the model version being deployed (:meth:`DockerInspector.check_signed`):
  a registry writer who points a version's image tags at an image of their
  own cannot get it deployed.

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
import re
import tarfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from ml_service.bundle import BundleMetadata
from ml_service.errors import UsageError
from ml_service.release.ports import ReleaseError

logger = logging.getLogger(__name__)

SBOM_PATH = "/opt/sbom/scoring.cdx.json"
MODEL_DIR = "/opt/model"
#: The evidence keys shown as ``qa.<key>`` version tags.
KEYS = ("sbom.sha256", "model.sha256")
#: Everything the signed QA record vouches for: the image ID too.
EVIDENCE = ("image.id", *KEYS)
#: The version tags of the signed QA record: the statement and its signature.
RECORD_TAG = "qa.record"
RECORD_SIGNATURE_TAG = "qa.record.sig"
RECORD_FILE = "qa-record.json"
RECORD_SCHEMA = "mlops-template/qa-record/v1"
#: An image digest as a release run passes it between jobs; also the form of an image ID.
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def is_image_id(value: str) -> bool:
    """Whether ``value`` is an image ID (``sha256:`` and 64 hex digits), not a name or tag
    that could be moved to another image between the checks and the run."""
    return bool(DIGEST.fullmatch(value))


class ImageInspector(Protocol):
    """Reads an image's evidence (the port the promotion state machine uses)."""

    def evidence(self, image: str) -> dict[str, str]:
        """The image's ID and the SHA-256 of its SBOM and model file, by :data:`EVIDENCE`."""

    def check_signed(self, image: str, name: str, version: int) -> None:
        """Raise ReleaseError unless the image's bundle is ``name`` version ``version``,
        signed by a key the repository trusts."""

    def seal(self, name: str, version: int, evidence: Mapping[str, str]) -> dict[str, str]:
        """The signed QA record of ``evidence``, as version tags (:data:`RECORD_TAG`...)."""

    def signed_evidence(self, name: str, version: int, tags: Mapping[str, str]) -> dict[str, str]:
        """The evidence QA signed for ``name`` version ``version``.

        Raises ReleaseError unless the record verifies against the trusted keys
        and names that model and version."""


def record_qa(tags_setter: Any, version: int, evidence: Mapping[str, str],
              sealed: Mapping[str, str]) -> None:
    """Record the signed evidence of the image that passed QA on ``version``."""
    for key in KEYS:
        tags_setter(version, f"qa.{key}", evidence[key])
    for key, value in sealed.items():
        tags_setter(version, key, value)


def check_evidence(version: int, signed: Mapping[str, str], evidence: Mapping[str, str],
                   image: str) -> None:
    """Raise unless ``evidence`` of ``image`` equals what QA signed for ``version``.

    Raises:
        ReleaseError: If the image, its SBOM or its model differ.
    """
    names = {"image.id": "image ID", "sbom.sha256": "SBOM", "model.sha256": "model file"}
    for key in EVIDENCE:
        mine, theirs = str(evidence.get(key, "")), str(signed.get(key, ""))
        if mine != theirs:
            shown = mine.removeprefix("sha256:")[:12]
            raise ReleaseError(
                f"image {image[:70]}'s {names[key]} ({shown or 'unknown'}) is not the one QA "
                f"signed for version {version} ({theirs.removeprefix('sha256:')[:12]}): "
                "refusing to deploy an image QA did not test; nothing was deployed")


def require_qa_record(version: int, tags: Mapping[str, str]) -> None:
    """Raise unless QA recorded a signed record of ``version``'s image.

    Raises:
        ReleaseError: If it did not: the version never passed QA, or passed
            before records were signed.
    """
    if not tags.get(RECORD_TAG) or not tags.get(RECORD_SIGNATURE_TAG):
        raise ReleaseError(
            f"version {version} has no signed QA record of its image (it did not pass QA, "
            "or passed before QA signed what it tested): run `mlops release --version "
            f"{version}` again; nothing was deployed")


def qa_statement(name: str, version: int, evidence: Mapping[str, str]) -> str:
    """The QA record's text: the model, version and evidence, in one canonical form."""
    return json.dumps({"schema": RECORD_SCHEMA, "model": name, "version": int(version),
                       "evidence": {k: str(evidence[k]) for k in EVIDENCE}},
                      sort_keys=True, indent=1) + "\n"


def seal_record(signer: Any, name: str, version: int,
                evidence: Mapping[str, str]) -> dict[str, str]:
    """Sign the QA record with ``signer`` (:class:`ml_service.signing.Signer`); its tags."""
    import tempfile

    from ml_service.signing import SIGNATURE_FILE

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / RECORD_FILE).write_text(qa_statement(name, version, evidence))
        signer.sign(folder)
        return {RECORD_TAG: (folder / RECORD_FILE).read_text(),
                RECORD_SIGNATURE_TAG: (folder / SIGNATURE_FILE).read_text()}


def open_record(name: str, version: int, tags: Mapping[str, str],
                trusted: Path | None) -> dict[str, str]:
    """The evidence of ``version``'s QA record, verified against the ``trusted`` keys.

    Raises:
        ReleaseError: If there is none, it does not verify, or it is another
            model's or version's record.
    """
    import tempfile

    from ml_service.signing import SIGNATURE_FILE, SignatureError, verify

    require_qa_record(version, tags)
    what = f"the QA record of {name} version {version}"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / RECORD_FILE).write_text(tags[RECORD_TAG])
        (folder / SIGNATURE_FILE).write_text(tags[RECORD_SIGNATURE_TAG])
        try:
            verify(folder, what, trusted)
        except SignatureError as exc:
            raise ReleaseError(f"{exc}; nothing was deployed") from None
    record = json.loads(tags[RECORD_TAG])
    if (record.get("schema"), record.get("model"), record.get("version")) != (
            RECORD_SCHEMA, name, int(version)):
        raise ReleaseError(f"{what} is signed, but for {record.get('model')} version "
                           f"{record.get('version')}: refusing; nothing was deployed")
    return {str(k): str(v) for k, v in record["evidence"].items()}


def check_digest(digest: str) -> str:
    """``digest`` if it is ``sha256:`` and 64 lowercase hex digits.

    Raises:
        UsageError: If it is not.
    """
    if not DIGEST.fullmatch(digest):
        raise UsageError(f"--digest must be sha256: followed by 64 lowercase hex digits, got "
                         f"{digest[:80]!r}")
    return digest


def pinned_image(version: int, tags: Mapping[str, str], digest: str) -> str:
    """``<name>@<digest>``: ``version``'s pushed image, if that is the digest it was pushed as.

    The registry's record of the push (tag ``image.ref``) must name exactly
    ``digest``: a digest from one release run cannot deploy or vouch for the
    model version of another.

    Raises:
        UsageError: If ``digest`` is malformed.
        ReleaseError: If the version's image was never pushed, or was pushed
            as another digest.
    """
    check_digest(digest)
    ref = tags.get("image.ref", "")
    if "@" not in ref:
        raise ReleaseError(
            f"version {version}'s image was never pushed (no image.ref), so it is not the image "
            f"{digest[:19]}… that was asked for: refusing; nothing was deployed")
    name, recorded = ref.split("@", 1)
    if recorded != digest:
        raise ReleaseError(
            f"version {version}'s pushed QA image is {recorded}, not {digest}: that digest is "
            f"not version {version}'s image (another release run's?); refusing; nothing was "
            "deployed")
    return f"{name}@{digest}"


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


class DockerInspector:
    """Reads files out of an image on a Docker engine, without running it.

    Without a client, it connects to the engine (DOCKER_HOST) when first used.
    ``trusted`` is the folder of the signing keys it trusts (default: the
    repository's, ``infra/signing/trusted``).
    """

    def __init__(self, client: Any = None, trusted: Path | None = None, signer: Any = None):
        self._client = client
        self.trusted = trusted
        #: Signs QA records (:class:`ml_service.signing.Signer`); only QA needs one.
        self.signer = signer

    @property
    def client(self) -> Any:
        """The Docker SDK client."""
        if self._client is None:
            from ml_service.release.engine import docker_client

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

    @contextmanager
    def _archive(self, image: str, path: str, missing: str) -> Iterator[tarfile.TarFile]:
        """``path`` of ``image`` as a tar archive, read from a container never started.

        Raises:
            ReleaseError: ``image {image} has no {path}: {missing}`` if it has no ``path``.
        """
        from docker.errors import NotFound

        container = self.client.containers.create(self._local(image), command=["true"])
        try:
            try:
                stream, _ = container.get_archive(path)
            except NotFound:
                raise ReleaseError(f"image {image[:70]} has no {path}: {missing}") from None
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
                yield archive
        finally:
            container.remove(force=True)

    def read(self, image: str, path: str) -> bytes:
        """The bytes of the file ``path`` inside ``image``.

        Raises:
            ReleaseError: If the image has no such file.
        """
        with self._archive(image, path, "it was built before images carried an SBOM, or not "
                           "by this project") as archive:
            member = archive.next()
            handle = archive.extractfile(member) if member is not None else None
            if handle is None:
                raise ReleaseError(f"{path} in image {image[:70]} is not a file")
            return handle.read()

    def check_signed(self, image: str, name: str, version: int) -> None:
        """Verify the bundle in ``image`` against the trusted keys of the deployer.

        The keys are the repository's (``MLOPS_SIGNING_TRUSTED`` or
        ``infra/signing/trusted``), never the image's own copy; then the signed
        metadata must name ``name`` version ``version``.

        Raises:
            ReleaseError: If the bundle is unsigned, signed by a key not trusted,
                changed since signing, or another model or version.
        """
        import tempfile

        from ml_service.signing import SignatureError, verify

        what = f"the bundle in image {image[:70]}"
        with tempfile.TemporaryDirectory() as tmp:
            bundle = self._extract(image, MODEL_DIR, Path(tmp))
            try:
                verify(bundle, what, self.trusted)
            except SignatureError as exc:
                raise ReleaseError(f"{exc}; nothing was deployed") from None
            metadata = BundleMetadata.read(bundle)
        if (metadata.name, metadata.version) != (name, version):
            raise ReleaseError(f"{what} is {metadata.name} version {metadata.version}, signed, "
                               f"but not {name} version {version}: refusing to deploy it as "
                               "that version; nothing was deployed")

    def _extract(self, image: str, path: str, into: Path) -> Path:
        """Copy the directory ``path`` out of ``image`` into ``into``; its copy's path."""
        with self._archive(image, path, "it is not a scoring image of this project") as archive:
            files = plain_members(archive, f"image {image[:70]}", path)
            archive.extractall(into, members=files)
        return into / Path(path).name

    def sbom(self, image: str) -> bytes:
        """The image's CycloneDX SBOM (JSON bytes)."""
        return self.read(image, SBOM_PATH)

    def evidence(self, image: str) -> dict[str, str]:
        """The image's ID, and the SHA-256 of its SBOM and of the model file it serves.

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
        image_id = str(self.client.images.get(self._local(image)).id)
        return {"image.id": image_id, "sbom.sha256": sha256(self.sbom(image)),
                "model.sha256": served}

    def seal(self, name: str, version: int, evidence: Mapping[str, str]) -> dict[str, str]:
        """The QA record of ``evidence``, signed with the pipeline's key."""
        if self.signer is None:
            raise ReleaseError("QA cannot sign what it tested: no signing key was given")
        return seal_record(self.signer, name, version, evidence)

    def signed_evidence(self, name: str, version: int, tags: Mapping[str, str]) -> dict[str, str]:
        """The evidence of ``version``'s QA record, verified against the trusted keys."""
        return open_record(name, version, tags, self.trusted)


def plain_members(archive: tarfile.TarFile, where: str, path: str) -> list[tarfile.TarInfo]:
    """The archive's members if all are plain files and folders inside it (no links,
    devices, absolute paths or ``..``), their modes without set-id bits.

    (tarfile's ``filter="data"`` does this from Python 3.11.4; runners may have
    an older 3.11.)

    Raises:
        ReleaseError: Naming the first member that is not.
    """
    members = archive.getmembers()
    for member in members:
        parts = Path(member.name).parts
        if not (member.isfile() or member.isdir()) or member.name.startswith("/") or (
                ".." in parts):
            raise ReleaseError(f"{path} in {where} holds {member.name!r}, which is not a plain "
                               "file or folder: refusing it")
        member.mode &= 0o755
    return members


CYCLONEDX_PREDICATE = "https://cyclonedx.org/bom"
RELEASE_WORKFLOW = ".github/workflows/release.yml"


def verify_attestations(ref: str, repository: str, source_ref: str = "refs/heads/main",
                        deny_self_hosted: bool = False, gh: str = "gh") -> list[str]:
    """Check GitHub's signed provenance and SBOM attestations of the pushed image ``ref``.

    Runs ``gh attestation verify`` twice (SLSA provenance, then the CycloneDX
    SBOM), each time requiring that the attestation was signed by this
    repository's release workflow (``--signer-workflow``) running on
    ``source_ref`` (``--source-ref``): the image is the one the release
    workflow built and pushed from that branch, not one pushed by hand or by
    a run on another branch.

    Args:
        ref: The pushed image by digest (``registry/name@sha256:...``).
        repository: ``owner/name`` of the repository (``GITHUB_REPOSITORY``).
        source_ref: The git ref the signing run must have run on
            (``MLOPS_SOURCE_REF``, default ``refs/heads/main``).
        deny_self_hosted: Also refuse attestations signed on a self-hosted
            runner (``--deny-self-hosted-runners``); the CLI sets it unless
            ``MLOPS_HOSTED_BUILDS=false`` (the workflow builds and signs on
            GitHub-hosted runners, wherever production runs).
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
    runners = ["--deny-self-hosted-runners"] if deny_self_hosted else []
    for kind, extra in (("build provenance", []),
                        ("SBOM", ["--predicate-type", CYCLONEDX_PREDICATE])):
        command = [gh, "attestation", "verify", f"oci://{ref}", "--repo", repository,
                   "--signer-workflow", f"{repository}/{RELEASE_WORKFLOW}",
                   "--source-ref", source_ref, *runners, *extra]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-4:])
            raise ReleaseError(f"the {kind} attestation of {ref} does not verify ({tail}): "
                               "refusing to deploy an image this repository's release "
                               f"workflow did not build on {source_ref}; nothing was deployed")
        passed.append(f"{kind} attestation of {ref} verified (signed by {repository}/"
                      f"{RELEASE_WORKFLOW} on {source_ref})")
    return passed

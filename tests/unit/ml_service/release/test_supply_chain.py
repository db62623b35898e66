"""The attestation check's gh command line, and pinning a version to a pushed digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_service.errors import UsageError
from ml_service.release.ports import ReleaseError
from ml_service.release.supply_chain import pinned_image, verify_attestations

DIGEST = "sha256:" + "ab" * 32
REF = f"ghcr.io/owner/model-scoring@{DIGEST}"


def recording_gh(tmp_path: Path, exit_code: int = 0) -> tuple[str, Path]:
    calls = tmp_path / "calls.txt"
    gh = tmp_path / "gh"
    gh.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "not signed by that ref" >&2\n'
                  f"exit {exit_code}\n")
    gh.chmod(0o755)
    return str(gh), calls


@pytest.mark.parametrize("hosted", [False, True], ids=["self-hosted", "github-hosted"])
def test_attestations_must_come_from_the_release_workflow_on_the_source_ref(tmp_path, hosted):
    gh, calls = recording_gh(tmp_path)
    lines = verify_attestations(REF, "owner/repo", "refs/heads/main", hosted, gh=gh)
    common = ("attestation verify oci://" + REF + " --repo owner/repo --signer-workflow "
              "owner/repo/.github/workflows/release.yml --source-ref refs/heads/main"
              + (" --deny-self-hosted-runners" if hosted else ""))
    assert calls.read_text() == (f"{common}\n"
                                 f"{common} --predicate-type https://cyclonedx.org/bom\n")
    assert len(lines) == 2 and all("on refs/heads/main" in line for line in lines)


def test_an_attestation_that_does_not_verify_is_refused_naming_the_source_ref(tmp_path):
    gh, _ = recording_gh(tmp_path, exit_code=1)
    with pytest.raises(ReleaseError) as refused:
        verify_attestations(REF, "owner/repo", "refs/heads/release", gh=gh)
    message = str(refused.value)
    assert "not signed by that ref" in message and "on refs/heads/release" in message
    assert "nothing was deployed" in message


def test_pinned_image_is_the_recorded_name_at_the_given_digest():
    assert pinned_image(1, {"image.ref": REF}, DIGEST) == REF


@pytest.mark.parametrize("tags,message", [
    ({}, "version 1's image was never pushed"),
    ({"image.ref": "ghcr.io/owner/model-scoring@sha256:" + "cd" * 32},
     f"version 1's pushed QA image is sha256:{'cd' * 32}, not {DIGEST}"),
])
def test_pinned_image_refuses_a_digest_the_registry_did_not_record(tags, message):
    with pytest.raises(ReleaseError) as refused:
        pinned_image(1, tags, DIGEST)
    assert message in str(refused.value) and "nothing was deployed" in str(refused.value)


def test_pinned_image_refuses_a_malformed_digest():
    with pytest.raises(UsageError, match="sha256: followed by 64 lowercase hex digits"):
        pinned_image(1, {"image.ref": REF}, DIGEST.upper())


def _archive(*members: tuple[str, str]) -> bytes:
    """A tar of ``(name, kind)`` members: ``file``, ``dir``, ``symlink`` or ``device``."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, kind in members:
            info = tarfile.TarInfo(name)
            info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE,
                         "symlink": tarfile.SYMTYPE, "device": tarfile.CHRTYPE}[kind]
            info.mode = 0o6755 if kind == "file" else 0o755
            if kind == "symlink":
                info.linkname = "/etc/passwd"
            tar.addfile(info, io.BytesIO(b"") if kind == "file" else None)
    return buffer.getvalue()


class ArchiveImages:
    """A Docker client whose containers' get_archive returns a fixed tar."""

    def __init__(self, data: bytes):
        self.data = data
        self.images = self
        self.containers = self

    def get(self, image):
        return image

    def create(self, image, command):
        return self

    def get_archive(self, path):
        return [self.data], {}

    def remove(self, force=False):
        pass


def test_a_bundle_is_copied_out_of_an_image_as_plain_files_only(tmp_path):
    from ml_service.release.supply_chain import DockerInspector

    good = DockerInspector(ArchiveImages(_archive(("model", "dir"), ("model/a.json", "file"))))
    copied = good._extract("sha256:img", "/opt/model", tmp_path)
    assert copied == tmp_path / "model" and (copied / "a.json").is_file()
    assert (copied / "a.json").stat().st_mode & 0o7777 == 0o755  # no set-id bits
    for bad in (("model/link", "symlink"), ("model/../../escape", "file"),
                ("/abs", "file"), ("model/tty", "device")):
        inspector = DockerInspector(ArchiveImages(_archive(("model", "dir"), bad)))
        with pytest.raises(ReleaseError, match="not a plain file or folder"):
            inspector._extract("sha256:img", "/opt/model", tmp_path / "other")
        assert not (tmp_path / "escape").exists()

"""The promotion state machine, with a fake registry and a fake deploy target.

The fakes keep the state the real adapters keep (aliases and tags in the
registry; what each stage runs on the target), so every path is checked on
that state: what serves, where the aliases point, and what history says.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from ml_service.errors import UsageError
from ml_service.release import promotion, supply_chain
from ml_service.release.ports import Deployment, ReleaseError, SmokeCheck


class FakeRegistry:
    """Aliases, version tags and model tags, in memory."""

    name = "model"

    def __init__(self, versions: int = 3):
        self.aliases: dict[str, int] = {}
        self.tags = {v: {"image.id": f"sha256:image{v}"} for v in range(1, versions + 1)}
        self.model_tags: dict[str, str] = {}

    def alias_version(self, alias: str) -> int | None:
        return self.aliases.get(alias)

    def set_alias(self, alias: str, version: int) -> None:
        self.aliases[alias] = version

    def version_tags(self, version: int) -> dict[str, str]:
        return self.tags[version]

    def set_version_tag(self, version: int, key: str, value: str) -> None:
        self.tags[version][key] = value

    def model_tag(self, key: str) -> str | None:
        return self.model_tags.get(key)

    def set_model_tag(self, key: str, value: str) -> None:
        self.model_tags[key] = value

    def load_model(self, version: int) -> object:
        return f"model {version}"


class FakeTarget:
    """Stages running images; a smoke check runs against a fake URL per version."""

    def __init__(self, lasting: bool = True):
        self.serving: dict[str, tuple[int, str]] = {}
        self.lasting = lasting
        self.deploys: list[tuple[str, int, bool]] = []

    def ensure_lasting(self) -> None:
        if not self.lasting:
            raise UsageError("not a lasting target")

    def resolve_image(self, version: int, tags: Mapping[str, str]) -> str:
        if "image.id" not in tags:
            raise ReleaseError(f"no image was built for version {version}")
        return tags["image.id"]

    def deploy(self, stage: str, version: int, image: str, smoke: SmokeCheck,
               keep_previous: bool) -> Deployment:
        self.deploys.append((stage, version, keep_previous))
        previous = self.serving.get(stage)
        self.serving[stage] = (version, image)
        try:
            smoke(f"http://{stage}/v{version}", "key")
        except ReleaseError as exc:
            if keep_previous:  # what the real targets do: the old one serves again
                if previous is None:
                    del self.serving[stage]
                else:
                    self.serving[stage] = previous
                raise ReleaseError(f"{exc}; {stage} is untouched") from None
            raise
        return Deployment(stage, version, f"{stage}-container", image, f"http://{stage}")

    def current_version(self, stage: str) -> int | None:
        return self.serving[stage][0] if stage in self.serving else None


def smoke_failing(*bad: int):
    """A smoke factory whose check fails for the versions in ``bad``."""

    def factory(version: int) -> SmokeCheck:
        def check(url: str, key: str) -> None:
            assert url.endswith(f"/v{version}")
            if version in bad:
                raise ReleaseError(f"predictions of version {version} differ")
        return check

    return factory


@pytest.fixture
def registry():
    return FakeRegistry()


@pytest.fixture
def target():
    return FakeTarget()


def history(registry):
    return json.loads(registry.model_tags.get(promotion.HISTORY_TAG, "[]"))


def test_a_version_that_passes_qa_gets_alias_qa(registry, target):
    deployment = promotion.release_qa(registry, target, 1, "sha256:image1", smoke_failing())
    assert registry.aliases == {"qa": 1}
    assert target.serving["qa"] == (1, "sha256:image1") and deployment.stage == "qa"
    assert target.deploys == [("qa", 1, False)]


def test_a_version_that_fails_qa_leaves_alias_qa_where_it_was(registry, target):
    promotion.release_qa(registry, target, 1, "sha256:image1", smoke_failing())
    with pytest.raises(ReleaseError, match="QA smoke test failed for version 2"):
        promotion.release_qa(registry, target, 2, "sha256:image2", smoke_failing(2))
    assert registry.aliases == {"qa": 1}


def test_first_promotion_deploys_the_qa_image_and_sets_production(registry, target):
    registry.set_alias("qa", 1)
    deployment = promotion.promote(registry, target, smoke_failing())
    assert deployment.version == 1 and deployment.image_id == "sha256:image1"
    assert target.serving["production"] == (1, "sha256:image1")
    assert registry.aliases["production"] == 1 and history(registry) == [1]
    assert target.deploys == [("production", 1, True)]  # the old one kept until it passes


@pytest.mark.parametrize("verdict", [None, "flagged"])
def test_a_required_shadow_verdict_that_did_not_pass_deploys_nothing(registry, target, verdict):
    registry.set_alias("qa", 1)
    if verdict:
        registry.set_version_tag(1, "shadow.verdict", verdict)
    with pytest.raises(ReleaseError, match="MLOPS_REQUIRE_SHADOW is on") as refused:
        promotion.promote(registry, target, smoke_failing(), require_shadow=True)
    assert ("no shadow report" if verdict is None else "a shadow report that was flagged") in (
        str(refused.value))
    assert target.deploys == [] and "production" not in registry.aliases
    registry.set_version_tag(1, "shadow.verdict", "passed")
    assert promotion.promote(registry, target, smoke_failing(), require_shadow=True).version == 1


def test_a_promotion_replaces_production_and_records_the_history(registry, target):
    promotion.promote(registry, target, smoke_failing(), 1)
    promotion.promote(registry, target, smoke_failing(), 2)
    assert target.serving["production"][0] == 2
    assert registry.aliases["production"] == 2 and history(registry) == [1, 2]


def test_a_candidate_failing_its_smoke_test_leaves_production_and_the_alias_alone(
        registry, target):
    promotion.promote(registry, target, smoke_failing(), 1)
    with pytest.raises(ReleaseError) as failed:
        promotion.promote(registry, target, smoke_failing(2), 2)
    message = str(failed.value)
    assert "production smoke test failed for version 2" in message
    assert "alias 'production' unchanged" in message
    assert target.serving["production"][0] == 1
    assert registry.aliases["production"] == 1 and history(registry) == [1]


def test_a_first_candidate_failing_leaves_nothing_deployed_and_no_alias(registry, target):
    with pytest.raises(ReleaseError):
        promotion.promote(registry, target, smoke_failing(1), 1)
    assert "production" not in target.serving and "production" not in registry.aliases


def test_promote_without_a_version_that_passed_qa_is_an_error(registry, target):
    with pytest.raises(ReleaseError, match="no version has passed QA"):
        promotion.promote(registry, target, smoke_failing())
    assert target.deploys == []


def test_a_version_without_an_image_is_refused_before_anything_is_deployed(target):
    registry = FakeRegistry()
    registry.tags[2] = {}
    with pytest.raises(ReleaseError, match="no image was built for version 2"):
        promotion.promote(registry, target, smoke_failing(), 2)
    assert target.deploys == []


def test_production_is_refused_on_a_target_that_would_not_last(registry):
    target = FakeTarget(lasting=False)
    with pytest.raises(UsageError):
        promotion.promote(registry, target, smoke_failing(), 1)
    with pytest.raises(UsageError):
        promotion.rollback(registry, target, smoke_failing())
    assert target.deploys == []


def test_rollback_returns_to_the_previous_version(registry, target):
    for version in (1, 2, 3):
        promotion.promote(registry, target, smoke_failing(), version)
    deployment = promotion.rollback(registry, target, smoke_failing())
    assert deployment.version == 2 and target.serving["production"][0] == 2
    assert registry.aliases["production"] == 2 and history(registry) == [1, 2]
    promotion.rollback(registry, target, smoke_failing())
    assert registry.aliases["production"] == 1 and history(registry) == [1]


def test_rollback_with_no_history_is_an_error_and_changes_nothing(registry, target):
    with pytest.raises(ReleaseError, match="nothing was promoted yet"):
        promotion.rollback(registry, target, smoke_failing())
    promotion.promote(registry, target, smoke_failing(), 1)
    with pytest.raises(ReleaseError, match="only one version"):
        promotion.rollback(registry, target, smoke_failing())
    assert registry.aliases["production"] == 1 and target.serving["production"][0] == 1


def test_a_rollback_whose_version_fails_its_smoke_test_keeps_production(registry, target):
    promotion.promote(registry, target, smoke_failing(), 1)
    promotion.promote(registry, target, smoke_failing(), 2)
    with pytest.raises(ReleaseError, match="version 1"):
        promotion.rollback(registry, target, smoke_failing(1))
    assert registry.aliases["production"] == 2 and history(registry) == [1, 2]
    assert target.serving["production"][0] == 2


def test_promoting_the_serving_version_again_does_not_repeat_it_in_the_history(
        registry, target):
    promotion.promote(registry, target, smoke_failing(), 1)
    promotion.promote(registry, target, smoke_failing(), 1)
    assert history(registry) == [1]


class FakeInspector:
    """Each image's ID, SBOM and model hashes, as a Docker engine would read them; QA
    records signed and verified for real, with the tests' pipeline key."""

    def __init__(self):
        self.images = {f"sha256:image{v}": {"image.id": f"sha256:image{v}",
                                            "sbom.sha256": f"sbom{v}", "model.sha256": f"m{v}"}
                       for v in (1, 2, 3)}

        self.unsigned: set[str] = set()

    def evidence(self, image: str) -> dict[str, str]:
        return dict(self.images[image])

    def seal(self, name: str, version: int, evidence) -> dict[str, str]:
        from ml_service.signing import Signer

        signer = Signer(None, Path(os.environ["MLOPS_SIGNING_KEY_FILE"]))
        return supply_chain.seal_record(signer, name, version, evidence)

    def signed_evidence(self, name: str, version: int, tags) -> dict[str, str]:
        return supply_chain.open_record(name, version, tags,
                                        Path(os.environ["MLOPS_SIGNING_TRUSTED"]))

    def check_signed(self, image: str, name: str, version: int) -> None:
        if image in self.unsigned:
            raise ReleaseError(f"the bundle in image {image} is not signed by a trusted key "
                               f"as {name} version {version}; nothing was deployed")


@pytest.mark.parametrize("stage", ["qa", "production"])
def test_an_image_not_signed_as_its_version_is_never_deployed(registry, target, stage):
    """A registry writer pointing a version at an image of their own gets nothing deployed."""
    inspector = FakeInspector()
    promotion.release_qa(registry, target, 1, "sha256:image1", smoke_failing(), inspector)
    promotion.promote(registry, target, smoke_failing(), 1, inspector)
    if stage == "production":  # passed QA, then the image behind its tags was swapped
        promotion.release_qa(registry, target, 2, "sha256:image2", smoke_failing(), inspector)
    deploys, aliases = list(target.deploys), dict(registry.aliases)
    inspector.unsigned.add("sha256:image2")
    with pytest.raises(ReleaseError, match="not signed by a trusted key"):
        if stage == "qa":
            promotion.release_qa(registry, target, 2, "sha256:image2", smoke_failing(),
                                 inspector)
        else:
            promotion.promote(registry, target, smoke_failing(), 2, inspector)
    assert target.deploys == deploys and registry.aliases == aliases
    assert registry.aliases["production"] == 1


def test_qa_signs_a_record_of_the_image_it_passed(registry, target):
    promotion.release_qa(registry, target, 1, "sha256:image1", smoke_failing(), FakeInspector())
    assert registry.tags[1]["qa.sbom.sha256"] == "sbom1"
    assert registry.tags[1]["qa.model.sha256"] == "m1"
    record = json.loads(registry.tags[1]["qa.record"])
    assert record["evidence"] == {"image.id": "sha256:image1", "sbom.sha256": "sbom1",
                                  "model.sha256": "m1"}
    assert (record["model"], record["version"]) == (registry.name, 1)
    assert "qa.record.sig" in registry.tags[1]
    # A failed QA records nothing.
    with pytest.raises(ReleaseError):
        promotion.release_qa(registry, target, 2, "sha256:image2", smoke_failing(2),
                             FakeInspector())
    assert "qa.sbom.sha256" not in registry.tags[2] and "qa.record" not in registry.tags[2]


@pytest.mark.parametrize("changed,what", [("image.id", "image ID"), ("sbom.sha256", "SBOM"),
                                          ("model.sha256", "model file")])
def test_promote_refuses_an_image_that_is_not_the_one_qa_signed(
        registry, target, changed, what):
    """E.g. an image built on the one QA passed (same bundle, same SBOM, other code)."""
    inspector = FakeInspector()
    promotion.release_qa(registry, target, 1, "sha256:image1", smoke_failing(), inspector)
    promotion.promote(registry, target, smoke_failing(), 1, inspector)
    promotion.release_qa(registry, target, 2, "sha256:image2", smoke_failing(), inspector)
    inspector.images["sha256:image2"][changed] = "tampered"  # e.g. a re-pushed tag
    with pytest.raises(ReleaseError) as refused:
        promotion.promote(registry, target, smoke_failing(), 2, inspector)
    assert f"'s {what} (tampered) is not the one QA signed for version 2" in \
        str(refused.value)
    assert "nothing was deployed" in str(refused.value)
    assert target.serving["production"][0] == 1 and registry.aliases["production"] == 1
    assert target.deploys.count(("production", 2, True)) == 0


def test_a_registry_writer_cannot_rewrite_or_replay_the_signed_record(registry, target):
    """Tags can be rewritten by whoever writes the registry; the signature cannot."""
    inspector = FakeInspector()
    promotion.release_qa(registry, target, 1, "sha256:image1", smoke_failing(), inspector)
    promotion.release_qa(registry, target, 2, "sha256:image2", smoke_failing(), inspector)
    tags_1, tags_2 = dict(registry.tags[1]), dict(registry.tags[2])
    # v1's record names its image; rewritten to name image 2 (and v1's tags point there):
    forged = json.loads(tags_1["qa.record"])
    forged["evidence"] = inspector.evidence("sha256:image3")
    registry.tags[1]["qa.record"] = json.dumps(forged)
    registry.tags[1]["image.id"] = "sha256:image3"
    with pytest.raises(ReleaseError, match="does not match its signature"):
        promotion.promote(registry, target, smoke_failing(), 1, inspector)
    # v2's genuine record replayed as v1's:
    registry.tags[1].update({k: tags_2[k] for k in ("qa.record", "qa.record.sig")})
    with pytest.raises(ReleaseError, match="is signed, but for .* version 2"):
        promotion.promote(registry, target, smoke_failing(), 1, inspector)
    assert "production" not in target.serving and "production" not in registry.aliases


def test_promote_and_rollback_refuse_a_version_qa_recorded_nothing_for(registry, target):
    inspector = FakeInspector()
    promotion.promote(registry, target, smoke_failing(), 1)  # before the records existed
    promotion.release_qa(registry, target, 2, "sha256:image2", smoke_failing(), inspector)
    promotion.promote(registry, target, smoke_failing(), 2, inspector)
    with pytest.raises(ReleaseError, match="version 1 has no signed QA record of its image"):
        promotion.rollback(registry, target, smoke_failing(), inspector)
    assert registry.aliases["production"] == 2 and target.serving["production"][0] == 2


# -- a release run names its version and digest: what its approval deploys

def digest_of(version: int) -> str:
    return "sha256:" + f"{version:x}" * 64


def qa_and_push(registry, target, inspector, version: int) -> str:
    """``version`` through QA, then pushed (tag image.ref); returns the pushed digest."""
    promotion.release_qa(registry, target, version, f"sha256:image{version}", smoke_failing(),
                         inspector)
    ref = f"ghcr.io/owner/model-scoring@{digest_of(version)}"
    registry.set_version_tag(version, "image.ref", ref)
    inspector.images[ref] = inspector.images[f"sha256:image{version}"]  # the same image
    return digest_of(version)


def test_promote_with_version_and_digest_deploys_that_digest_even_after_qa_moved_on(
        registry, target):
    inspector = FakeInspector()
    digest_a = qa_and_push(registry, target, inspector, 1)  # run A's QA job
    qa_and_push(registry, target, inspector, 2)  # run B's QA job, while A awaits approval
    assert registry.aliases["qa"] == 2
    deployment = promotion.promote(registry, target, smoke_failing(), 1, inspector, digest_a)
    image = f"ghcr.io/owner/model-scoring@{digest_a}"
    assert deployment.version == 1 and deployment.image_id == image
    assert target.serving["production"] == (1, image)  # pulled by digest, not alias qa's
    assert registry.aliases["production"] == 1 and history(registry) == [1]


def test_promote_refuses_a_digest_that_is_not_the_versions_pushed_image(registry, target):
    inspector = FakeInspector()
    qa_and_push(registry, target, inspector, 1)
    digest_b = qa_and_push(registry, target, inspector, 2)
    with pytest.raises(ReleaseError) as refused:
        promotion.promote(registry, target, smoke_failing(), 1, inspector, digest_b)
    message = str(refused.value)
    assert f"version 1's pushed QA image is {digest_of(1)}, not {digest_b}" in message
    assert "nothing was deployed" in message
    assert "production" not in target.serving and "production" not in registry.aliases
    assert history(registry) == []


def test_promote_with_a_digest_refuses_a_version_whose_image_was_never_pushed(registry, target):
    inspector = FakeInspector()
    promotion.release_qa(registry, target, 1, "sha256:image1", smoke_failing(), inspector)
    with pytest.raises(ReleaseError) as refused:
        promotion.promote(registry, target, smoke_failing(), 1, inspector, digest_of(1))
    assert "version 1's image was never pushed" in str(refused.value)
    assert "nothing was deployed" in str(refused.value)
    assert ("production", 1, True) not in target.deploys and "production" not in registry.aliases


@pytest.mark.parametrize("inspector", [None, FakeInspector()], ids=["no-inspector", "inspector"])
def test_promote_with_a_digest_refuses_a_version_that_did_not_pass_qa(
        registry, target, inspector):
    ref = f"ghcr.io/owner/model-scoring@{digest_of(1)}"
    registry.set_version_tag(1, "image.ref", ref)  # pushed, but QA never passed it
    if inspector is not None:
        inspector.images[ref] = inspector.images["sha256:image1"]
    with pytest.raises(ReleaseError) as refused:
        promotion.promote(registry, target, smoke_failing(), 1, inspector, digest_of(1))
    assert "version 1 has no signed QA record of its image" in str(refused.value)
    assert "nothing was deployed" in str(refused.value)
    assert target.deploys == [] and "production" not in registry.aliases


def test_a_digest_without_a_version_is_a_usage_error_and_deploys_nothing(registry, target):
    inspector = FakeInspector()
    digest = qa_and_push(registry, target, inspector, 1)
    with pytest.raises(UsageError, match="a digest alone does not name a model version"):
        promotion.promote(registry, target, smoke_failing(), None, inspector, digest)
    assert ("production", 1, True) not in target.deploys and "production" not in registry.aliases


@pytest.mark.parametrize("digest", ["sha256:" + "A" * 64, "sha256:" + "a" * 63, "a" * 64,
                                    "sha512:" + "a" * 64, "sha256:" + "a" * 64 + "\n"])
def test_a_malformed_digest_is_a_usage_error(registry, target, digest):
    registry.set_version_tag(1, "image.ref", f"ghcr.io/owner/model-scoring@{digest}")
    with pytest.raises(UsageError, match="64 lowercase hex digits"):
        promotion.promote(registry, target, smoke_failing(), 1, None, digest)
    assert target.deploys == []


def test_a_malformed_history_record_stops_promote_before_it_deploys(registry, target):
    registry.model_tags[promotion.HISTORY_TAG] = "not json"
    with pytest.raises(ReleaseError, match="is not a list of versions"):
        promotion.promote(registry, target, smoke_failing(), 1)
    assert "production" not in target.serving and "production" not in registry.aliases

"""A release that changes a stage's keys locks no client out on the way.

The targets' key stores are replaced by lists here (their real volume and
Secret are exercised in tests/e2e); what is checked is the order: old and new
keys while the release deploys, the new ones alone once it passed, the old
ones back if it failed.
"""

from __future__ import annotations

import logging

import pytest

from ml_service.release import stage_keys
from ml_service.release.docker_target import DockerTarget
from ml_service.release.kubernetes_target import KubernetesTarget
from ml_service.release.ports import Deployment, ReleaseError
from ml_service.settings import Settings

OLD, NEW = "old-key-" + "o" * 24, "new-key-" + "n" * 24


def test_the_old_keys_stay_accepted_until_the_new_instance_passed():
    assert stage_keys.transition("qa", [OLD], [NEW]) == ([NEW, OLD], [NEW])
    assert stage_keys.transition("qa", [OLD], []) == ([OLD], [OLD])  # the stage keeps its own
    assert stage_keys.transition("qa", [NEW, OLD], [NEW]) == ([NEW, OLD], [NEW])
    during, after = stage_keys.transition("qa", [], [])  # a first release: one new key
    assert during == after and len(after) == 1


def test_a_deployer_key_the_stage_had_dropped_is_named_when_it_comes_back(caplog):
    from ml_service.serving.auth import key_id

    with caplog.at_level(logging.WARNING, logger="ml_service.release.stage_keys"):
        stage_keys.settle("production", [NEW], [NEW, OLD])
    assert f"adds key {key_id(OLD)}" in caplog.text


class _Recording:
    """A target whose key store is a list and whose deploy passes or fails on demand."""

    def __init__(self, stored: list[str], fails: bool):
        self.store, self.fails, self.writes, self.smoked_with = list(stored), fails, [], None

    def read_keys(self, stage, image=None):
        return list(self.store)

    def write_keys(self, stage, keys, image=None):
        self.store = list(keys)
        self.writes.append(list(keys))

    def _deployed(self, key):
        self.smoked_with = key
        assert NEW in self.store and OLD in self.store  # both accepted while it deploys
        if self.fails:
            raise ReleaseError("the smoke test failed")
        return Deployment("production", 2, "c", "image", "url")


class DockerRecording(_Recording, DockerTarget):
    def __init__(self, stored, fails):
        DockerTarget.__init__(self, Settings(api_keys=NEW), client=object())
        _Recording.__init__(self, stored, fails)

    def _deploy(self, stage, version, image, smoke, key, keep_previous):
        return self._deployed(key)


class KubernetesRecording(_Recording, KubernetesTarget):
    def __init__(self, stored, fails):
        KubernetesTarget.__init__(self, Settings(api_keys=NEW))
        _Recording.__init__(self, stored, fails)

    def current_version(self, stage):
        return 1

    def _ensure_namespace(self, stage):
        pass

    def _ensure_pull_secret(self, stage):
        pass

    def delete_canary(self, stage):
        pass

    def _roll(self, stage, version, image, smoke, key, before):
        return self._deployed(key)


@pytest.mark.parametrize("target", [DockerRecording, KubernetesRecording])
def test_new_keys_are_added_for_the_deploy_and_the_old_dropped_once_it_passed(target):
    recording = target([OLD], fails=False)
    recording.deploy("production", 2, "image", lambda url, key: None, keep_previous=True)
    assert recording.writes == [[NEW, OLD], [NEW]] and recording.smoked_with == NEW


@pytest.mark.parametrize("target", [DockerRecording, KubernetesRecording])
def test_a_failed_release_puts_the_old_keys_back(target):
    recording = target([OLD], fails=True)
    with pytest.raises(ReleaseError, match="the smoke test failed"):
        recording.deploy("production", 2, "image", lambda url, key: None, keep_previous=True)
    assert recording.writes == [[NEW, OLD], [OLD]] and recording.store == [OLD]

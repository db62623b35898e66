"""The canary's plan, its verdicts and its steps, with a fake cluster and Prometheus.

The real thing (a cluster, Prometheus scraping the pods, a load generator)
is tests/e2e/test_kubernetes.py::test_canary_promotes_in_steps_...
"""

from __future__ import annotations

import math

import numpy as np

import pytest

from ml_service.errors import UsageError
from ml_service.release import canary
from ml_service.release.analysis import Track
from ml_service.release.canary import Plan, canary_pods, judge, parse_steps
from ml_service.release.ports import ReleaseError
from ml_service.settings import Settings

PLAN = Plan(steps=[10, 50], step_seconds=30, prometheus_url="http://prometheus:9090",
            min_requests=50, max_error_rate=0.01, max_p99_ratio=1.5, p99_slack=0.025,
            max_psi=0.25)
#: A prediction histogram (cumulative counts by upper edge) and the same, shifted.
SPREAD = {100.0: 100, 200.0: 300, 300.0: 400, math.inf: 400}
SHIFTED = {100.0: 0, 200.0: 20, 300.0: 300, math.inf: 400}


def track(requests=400.0, errors=0.0, p99=0.020, predictions=None) -> Track:
    return Track(requests, errors, p99, SPREAD if predictions is None else predictions)


@pytest.mark.parametrize("text, steps", [("10", [10]), ("10,50", [10, 50]),
                                         (" 5%, 25 ,75 ", [5, 25, 75]), ("0.5", [0.5])])
def test_steps_are_increasing_percents(text, steps):
    assert parse_steps(text) == steps


@pytest.mark.parametrize("text", ["ten", "10,,50", "0", "100", "50,10", "10,10", "-5", "10;50"])
def test_malformed_steps_are_refused_with_the_setting_named(text):
    with pytest.raises(UsageError, match="MLOPS_CANARY_STEPS"):
        parse_steps(text)


@pytest.mark.parametrize("percent, stable, pods", [
    (10, 2, 1),   # the finest step beside 2 stable pods: 1 of 3 (33%)
    (10, 9, 1),   # 10% exactly
    (20, 4, 1), (50, 2, 2), (50, 4, 4), (75, 2, 6), (1, 100, 1),
])
def test_a_share_is_what_the_pod_counts_allow(percent, stable, pods):
    assert canary_pods(percent, stable) == pods


def test_no_steps_is_a_plain_rollout_and_steps_need_a_prometheus():
    assert Plan.of(Settings(canary_steps="")) is None
    with pytest.raises(UsageError, match="MLOPS_PROMETHEUS_URL"):
        Plan.of(Settings(canary_steps="10", prometheus_url=None))
    plan = Plan.of(Settings(canary_steps="10,50", prometheus_url="http://p:9090/",
                            canary_step_seconds=20))
    assert plan is not None and plan.steps == [10, 50] and plan.step_seconds == 20
    assert plan.prometheus_url == "http://p:9090"


def test_a_canary_like_the_stable_version_passes():
    verdict = judge(PLAN, track(requests=60, p99=0.030), track(requests=600))
    assert verdict.passed and verdict.psi == pytest.approx(0, abs=1e-9)


def test_too_few_requests_is_no_verdict_and_fails():
    verdict = judge(PLAN, track(requests=12), track())
    assert not verdict.passed and "answered 12 /score requests, fewer than 50" in (
        verdict.failures[0])


def test_server_errors_beyond_the_stable_versions_fail():
    assert judge(PLAN, track(errors=4), track(errors=2)).passed  # 1% vs 0.5%: within 1% more
    verdict = judge(PLAN, track(errors=12), track(errors=2))
    assert verdict.failures == ["failed answers (not 2xx): 3.0% of the canary's requests "
                                "against 0.5% of the stable version's (at most 1.0% more)"]


def test_p99_beyond_the_ratio_and_the_slack_fails():
    assert judge(PLAN, track(p99=0.044), track(p99=0.020)).passed  # within 25 ms more
    assert judge(PLAN, track(p99=0.290), track(p99=0.200)).passed  # within 1.5x
    verdict = judge(PLAN, track(p99=0.240), track(p99=0.020))
    assert verdict.failures == ["p99 latency: 240 ms against the stable version's 20 ms "
                                "(at most 45 ms)"]


def test_shifted_predictions_fail_on_their_stability_index():
    verdict = judge(PLAN, track(predictions=SHIFTED), track())
    assert verdict.psi > 1 and len(verdict.failures) == 1
    assert verdict.failures[0].startswith("predictions shifted: population stability index")


class FakeCluster:
    def __init__(self, not_ready: bool = False):
        self.calls: list[tuple] = []
        self.not_ready = not_ready

    def namespace(self, stage):
        return f"ns-{stage}"

    def replicas(self, stage):
        return 4

    def apply_canary(self, stage, version, image, pods):
        self.calls.append(("apply", pods))
        if self.not_ready:
            raise ReleaseError("the canary pods of version 3 were not ready within 40s")

    def delete_canary(self, stage):
        self.calls.append(("delete",))

    def new_pods(self, stage, name):
        return [f"{name}-pod"]


def run(cluster, monkeypatch, tmp_path, tracks, smoke=lambda pod: None):
    """canary.run with Prometheus' answers given as (canary, stable) per step."""
    answers = iter(tracks)
    steps: list[tuple[Track, Track]] = []

    def observe(prometheus, namespace, which, window, at):
        if which == "canary":
            steps.append(next(answers))
        return steps[-1][0 if which == "canary" else 1]

    monkeypatch.setattr(canary, "observe", observe)
    summary = tmp_path / "summary.md"
    result = canary.run(cluster, PLAN, "production", 3, "img@sha256:" + "a" * 64, 2, smoke,
                        lambda: cluster.calls.append(("rollout",)) or "rolled", summary,
                        sleep=lambda seconds: cluster.calls.append(("hold", seconds)))
    return result, summary


def test_steps_pass_then_the_stable_deployment_rolls_and_the_canary_goes(monkeypatch, tmp_path):
    cluster = FakeCluster()
    result, summary = run(cluster, monkeypatch, tmp_path, [(track(), track())] * 2)
    assert result == "rolled"
    assert cluster.calls == [("delete",), ("apply", 1), ("hold", 30), ("apply", 4), ("hold", 30),
                             ("rollout",), ("delete",)]
    text = summary.read_text()
    assert "### Canary: version 3 against version 2 (namespace ns-production)" in text
    assert "| 1 | 10% asked: 1 of 5 pods (20%) | 400 / 400 | 0.0% / 0.0% | 20 ms / 20 ms |" in text
    assert "| 2 | 50% asked: 4 of 8 pods (50%) |" in text
    assert "**Promoted**: version 3 passed 2 step(s) and was rolled out to all 4 pod(s)." in text


def test_a_failed_analysis_removes_the_canary_and_says_why(monkeypatch, tmp_path):
    cluster = FakeCluster()
    with pytest.raises(ReleaseError) as failed:
        run(cluster, monkeypatch, tmp_path, [(track(predictions=SHIFTED), track())])
    message = str(failed.value)
    assert message.startswith("canary step 1 (10% asked: 1 of 5 pods (20%)) failed its "
                              "analysis: predictions shifted")
    assert message.endswith("the canary was removed: all traffic is back on version 2")
    assert cluster.calls == [("delete",), ("apply", 1), ("hold", 30), ("delete",)]
    text = (tmp_path / "summary.md").read_text()
    assert "| **fail** |" in text and "**Aborted**: canary step 1" in text
    assert "Alias 'production' unchanged" in text


def test_canary_pods_that_never_get_ready_or_fail_their_smoke_test_are_removed(
        monkeypatch, tmp_path):
    cluster = FakeCluster(not_ready=True)
    with pytest.raises(ReleaseError, match="not ready within 40s; the canary was removed"):
        run(cluster, monkeypatch, tmp_path, [])
    assert cluster.calls[-1] == ("delete",)

    def smoke(pod):
        raise ReleaseError(f"canary pod {pod} failed its smoke test: wrong predictions")

    cluster = FakeCluster()
    with pytest.raises(ReleaseError, match="scoring-canary-pod failed its smoke test"):
        run(cluster, monkeypatch, tmp_path, [], smoke=smoke)
    assert cluster.calls == [("delete",), ("apply", 1), ("delete",)]


def test_an_interrupted_promotion_removes_the_canary(monkeypatch, tmp_path):
    cluster = FakeCluster()

    def interrupted(pod):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(cluster, monkeypatch, tmp_path, [], smoke=interrupted)
    assert cluster.calls[-1] == ("delete",)


def test_buckets_of_histograms_with_other_edges_are_not_counted_twice():
    from ml_service.release.analysis import per_bucket

    edges = [100.0, 150.0, 200.0, math.inf]
    # 150 is not an edge of this histogram: its count is the one at 100, not 0.
    counts = per_bucket({100.0: 10, 200.0: 30, math.inf: 40}, edges)
    assert counts.tolist() == [10, 0, 20, 10] and counts.sum() == 40


def test_a_small_sample_of_the_same_predictions_is_not_called_a_shift():
    rng = np.random.default_rng(0)
    edges = [float(e) for e in np.linspace(25, 346, 11)] + [math.inf]

    def histogram(n):
        values = rng.normal(152, 60, n)
        return {edge: float(np.sum(values <= edge)) for edge in edges}

    # 50 canary predictions against 5,000 stable ones of one distribution: the
    # index alone is sampling noise, about (bins - 1) / 50.
    stable = track(requests=5000, predictions=histogram(5000))
    passed = [judge(PLAN, track(requests=50, predictions=histogram(50)), stable).passed
              for _ in range(20)]
    assert sum(passed) >= 19
    assert not judge(PLAN, track(requests=50, predictions=SHIFTED), track()).passed


def test_a_canary_that_cannot_be_removed_says_so_and_how(monkeypatch, tmp_path):
    cluster = FakeCluster()
    deletes = []

    def delete(stage):
        deletes.append(stage)
        if len(deletes) > 1:  # the first (a leftover) works; removing this one fails
            raise ReleaseError("kubectl delete …: the server is unreachable")

    cluster.delete_canary = delete
    monkeypatch.setattr(canary.time, "sleep", lambda seconds: None)
    with pytest.raises(ReleaseError) as failed:
        run(cluster, monkeypatch, tmp_path, [(track(predictions=SHIFTED), track())])
    assert "REMOVING THE CANARY FAILED" in str(failed.value)
    assert "kubectl -n ns-production delete deployment scoring-canary" in str(failed.value)
    assert "all traffic is back" not in str(failed.value)


def test_a_failed_full_rollout_does_not_claim_the_old_version_serves(monkeypatch, tmp_path):
    cluster = FakeCluster()

    def rollout():
        raise ReleaseError("pod x failed its smoke test; the rollout was undone")

    monkeypatch.setattr(canary, "observe", lambda p, n, which, w, at: track())
    with pytest.raises(ReleaseError) as failed:
        canary.run(cluster, PLAN, "production", 3, "img", 2, lambda pod: None, rollout,
                   sleep=lambda seconds: None)
    assert str(failed.value) == ("pod x failed its smoke test; the rollout was undone; the "
                                 "canary was removed")


def test_sigterm_during_the_steps_aborts_and_removes_the_canary(monkeypatch, tmp_path):
    import os
    import signal

    cluster = FakeCluster()

    def terminated(pod):
        os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(ReleaseError, match=r"stopped \(SIGTERM\); the canary was removed"):
        run(cluster, monkeypatch, tmp_path, [], smoke=terminated)
    assert cluster.calls[-1] == ("delete",)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back

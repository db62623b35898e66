"""A shadow report's verdict from Prometheus' figures (the cluster: tests/e2e)."""

from __future__ import annotations

import math

import pytest

from ml_service.release.canary import Plan
from ml_service.release.shadow import Report, Thresholds, _judge

PLAN = Plan(steps=[], step_seconds=0, prometheus_url="http://p", min_requests=50,
            max_error_rate=0.01, max_p99_ratio=1.5, p99_slack=0.025, max_psi=0.25)
THRESHOLDS = Thresholds(min_requests=100, min_agreement=0.9, plan=PLAN)


def report(answered=400.0, failed=0.0, agree=390.0, disagree=10.0, psi=0.02,
           p99=(0.030, 0.020), errors=(0.0, 0.0)) -> Report:
    found = Report(3, 2, 300, {"answered": answered, "failed": failed, "dropped": 0.0},
                   {"agree": agree, "disagree": disagree},
                   {"p50": 0.5, "p90": 2.0, "p99": 6.0}, psi,
                   {"shadow": p99[0], "production": p99[1]},
                   {"shadow": errors[0], "production": errors[1]})
    _judge(found, THRESHOLDS)
    return found


def test_a_shadow_like_production_passes():
    found = report()
    assert found.passed and found.agreement == pytest.approx(0.975)
    text = found.markdown()
    assert "### Shadow: version 3 beside production's version 2 (**passed**)" in text
    assert "| copies answered / failed / dropped | 400 / 0 / 0 | |" in text
    assert "| rows within the tolerance (agreement) | 97.5% of 400 | |" in text
    assert "| p99 latency of /score | 30 ms | 20 ms |" in text
    assert "- every check passed" in text
    assert found.as_json()["passed"] is True and "<pre>" in found.html()


def test_too_few_copies_is_no_verdict():
    found = report(answered=20)
    assert found.failures == ["the shadow answered 20 copies, fewer than 100 "
                              "(MLOPS_SHADOW_MIN_REQUESTS): not enough traffic yet, or "
                              "production's pods do not copy to it"]


@pytest.mark.parametrize("kwargs, failure", [
    ({"agree": 200, "disagree": 200}, "agreement: 50.0% of rows within the tolerance"),
    ({"psi": 1.7}, "predictions shifted: population stability index 1.70"),
    ({"p99": (0.240, 0.020)}, "p99 latency: 240 ms against production's 20 ms (at most 45 ms)"),
    ({"failed": 40}, "errors: 9.1% of the copies failed"),
    ({"errors": (0.05, 0.0)}, "errors: 5.0% of the copies failed"),
])
def test_each_check_flags_a_shadow(kwargs, failure):
    found = report(**kwargs)
    assert not found.passed and len(found.failures) == 1 and failure in found.failures[0]
    assert "(**flagged**)" in found.markdown() and f"- {found.failures[0]}" in found.markdown()


def test_missing_figures_are_shown_as_such():
    found = report(psi=math.nan, p99=(math.nan, 0.02))
    assert found.passed
    assert "| prediction PSI (against production) | - | |" in found.markdown()

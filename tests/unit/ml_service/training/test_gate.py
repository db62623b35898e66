import pytest

from ml_service.training.comparison import Improvement, SliceResult
from ml_service.training.config import GateConfig, ImprovementRule, SliceRule
from ml_service.training.gate import decide, floor_violations, relative_improvement

HIGHER = {"r2"}

RULES = GateConfig(primary_metric="rmse", margin=0.01, floor={"rmse": 65.0, "r2": 0.3})
GOOD = {"rmse": 50.0, "mse": 2500.0, "mae": 42.0, "r2": 0.50}


def metrics(rmse: float, r2: float = 0.5) -> dict[str, float]:
    return {"rmse": rmse, "mse": rmse**2, "mae": rmse * 0.8, "r2": r2}


def test_first_model_is_registered_when_it_meets_the_floor():
    decision = decide(GOOD, None, RULES, HIGHER)
    assert decision.register and "first model" in decision.reason


def test_first_model_below_the_floor_is_not_registered():
    decision = decide(metrics(70.0, r2=0.1), None, RULES, HIGHER)
    assert not decision.register
    assert "rmse 70 is above the ceiling 65" in decision.reason
    assert "r2 0.1 is below the floor 0.3" in decision.reason


def test_it_registers_a_candidate_better_than_the_champion_by_the_margin():
    decision = decide(metrics(49.0), metrics(50.0), RULES, HIGHER, champion_version=3)
    assert decision.register
    assert "better than the champion v3" in decision.reason and "+2.00%" in decision.reason


def test_it_does_not_register_a_candidate_better_by_less_than_the_margin():
    decision = decide(metrics(49.8), metrics(50.0), RULES, HIGHER)
    assert not decision.register and "not better" in decision.reason


def test_it_does_not_register_a_candidate_worse_than_the_champion():
    decision = decide(metrics(55.0), metrics(50.0), RULES, HIGHER)
    assert not decision.register and "-10.00%" in decision.reason


def test_a_better_candidate_still_has_to_meet_the_floor():
    decision = decide(metrics(66.0), metrics(80.0, r2=0.1), RULES, HIGHER)
    assert not decision.register and "quality floor" in decision.reason


def test_force_registers_a_rejected_candidate_and_keeps_the_gate_verdict():
    decision = decide(metrics(55.0), metrics(50.0), RULES, HIGHER, force=True)
    assert decision.register and decision.forced
    assert decision.reason.startswith("forced; the gate said: not better")


def test_force_marks_even_a_passing_candidate_as_forced():
    decision = decide(metrics(40.0), metrics(50.0), RULES, HIGHER, force=True)
    assert decision.register and decision.forced


def test_greater_is_better_metrics_compare_the_other_way():
    rules = GateConfig(primary_metric="r2", margin=0.05, floor={})
    assert decide(metrics(50, r2=0.60), metrics(50, r2=0.50), rules, HIGHER).register
    assert not decide(metrics(50, r2=0.51), metrics(50, r2=0.50), rules, HIGHER).register


def test_relative_improvement_handles_a_zero_champion():
    assert relative_improvement(0.1, 0.0, True) == float("inf")
    assert relative_improvement(0.0, 0.0, False) == 0.0


@pytest.mark.parametrize("value,ok", [(65.0, True), (65.01, False)])
def test_floor_bounds_are_inclusive(value, ok):
    assert (floor_violations({"rmse": value}, {"rmse": 65.0}, HIGHER) == []) is ok


def interval(point: float, low: float, high: float) -> Improvement:
    return Improvement("rmse", point, low, high, confidence=0.95, resamples=1000, seed=0, rows=80)


STRICT = RULES.model_copy(update={"improvement": ImprovementRule(min_lower_bound=0.0)})


def test_a_candidate_better_only_by_noise_is_refused_with_its_interval():
    decision = decide(metrics(49.0), metrics(50.0), STRICT, HIGHER, champion_version=2,
                      improvement=interval(0.02, -0.013, 0.055))
    assert not decision.register
    assert decision.reason.startswith("not better than the champion v2 beyond noise")
    assert "95% CI -1.30% to +5.50%" in decision.reason
    assert "lower bound -1.30% is not above +0.00%" in decision.reason


def test_a_candidate_better_beyond_noise_is_registered_and_the_reason_shows_the_interval():
    decision = decide(metrics(45.0), metrics(50.0), STRICT, HIGHER, champion_version=2,
                      improvement=interval(0.10, 0.008, 0.19))
    assert decision.register
    assert "better than the champion v2" in decision.reason and "CI +0.80% to +19.00%" in \
        decision.reason


def test_without_the_rule_the_interval_is_reported_but_the_margin_decides():
    decision = decide(metrics(49.0), metrics(50.0), RULES, HIGHER,
                      improvement=interval(0.02, -0.013, 0.055))
    assert decision.register and "CI -1.30% to +5.50%" in decision.reason


def test_the_rule_refuses_when_no_interval_could_be_computed():
    unknown = interval(0.02, float("nan"), float("nan"))
    decision = decide(metrics(49.0), metrics(50.0), STRICT, HIGHER, improvement=unknown)
    assert not decision.register and "none could be computed" in decision.reason
    assert not decide(metrics(49.0), metrics(50.0), STRICT, HIGHER).register


def slice_row(group: str, rows: int, change: float) -> SliceResult:
    return SliceResult("sex", group, rows, 50.0 * (1 - change), 50.0, change)


def test_a_slice_worse_than_the_tolerance_vetoes_an_overall_better_candidate():
    rules = RULES.model_copy(update={"slices": SliceRule(tolerance=0.05, min_rows=20)})
    slices = [slice_row("1", 42, 0.12), slice_row("2", 38, -0.08), slice_row("3", 5, -0.5)]
    decision = decide(metrics(45.0), metrics(50.0), rules, HIGHER, slices=slices)
    assert not decision.register
    assert "worse than the champion on a slice beyond the tolerance 5.00%" in decision.reason
    assert "sex=2 (38 rows)" in decision.reason and "-8.00%" in decision.reason
    assert "sex=3" not in decision.reason  # too few rows to judge

    within = [slice_row("1", 42, 0.12), slice_row("2", 38, -0.04)]
    assert decide(metrics(45.0), metrics(50.0), rules, HIGHER, slices=within).register
    # Without a tolerance, slices are reported, not judged.
    assert decide(metrics(45.0), metrics(50.0), RULES, HIGHER, slices=slices).register


def test_a_relative_margin_can_never_be_met_near_a_bound_and_an_absolute_one_can():
    """AUC 0.996 -> 0.999: +0.3% relative, +0.003 absolute."""
    champion, candidate = {"roc_auc": 0.996}, {"roc_auc": 0.999}
    relative = GateConfig(primary_metric="roc_auc", margin=0.01, floor={})
    verdict = decide(candidate, champion, relative, {"roc_auc"})
    assert not verdict.register and "margin 1.00%" in verdict.reason
    absolute = GateConfig(primary_metric="roc_auc", margin=0.002, margin_kind="absolute",
                          floor={})
    verdict = decide(candidate, champion, absolute, {"roc_auc"})
    assert verdict.register and "+0.003" in verdict.reason
    assert "margin 0.002 absolute" in verdict.reason
    stricter = absolute.model_copy(update={"margin": 0.004})
    assert not decide(candidate, champion, stricter, {"roc_auc"}).register
    # Lower is better: an error falling by 0.5 units is an absolute gain of +0.5.
    errors = GateConfig(primary_metric="rmse", margin=0.4, margin_kind="absolute", floor={})
    assert decide({"rmse": 50.0}, {"rmse": 50.5}, errors, set()).register


def test_the_interval_is_in_the_kind_of_the_margin():
    import numpy as np

    from ml_service.spec import Metric
    from ml_service.training.comparison import paired_improvement

    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    better, worse = y + rng.normal(scale=0.5, size=200), y + rng.normal(scale=0.6, size=200)
    rmse = Metric("rmse", lambda t, p: float(np.sqrt(np.mean((t - p) ** 2))), False)
    absolute = paired_improvement(y, better, worse, rmse, resamples=200, kind="absolute")
    relative = paired_improvement(y, better, worse, rmse, resamples=200)
    assert absolute.kind == "absolute" and relative.kind == "relative"
    assert absolute.point == pytest.approx(rmse.function(y, worse) - rmse.function(y, better))
    assert relative.point == pytest.approx(absolute.point / rmse.function(y, worse))
    assert absolute.describe().startswith(f"{absolute.point:+.4g} (95% CI ")
    assert relative.describe().startswith(f"{relative.point:+.2%} (95% CI ")

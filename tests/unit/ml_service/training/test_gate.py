import pytest

from ml_service.training.config import GateConfig
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

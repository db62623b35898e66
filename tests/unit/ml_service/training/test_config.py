import pytest

from diabetes_regression.spec import SPEC
from ml_service.errors import UsageError
from ml_service.training.config import GateConfig, PipelineConfig, load_config

GATE = GateConfig(primary_metric="rmse")


def test_the_shipped_config_loads():
    config = load_config(SPEC.config_path, SPEC)
    assert config.model["alpha"] > 0
    assert 0 < config.split.holdout_fraction < 1
    assert config.gate.primary_metric == "rmse"


@pytest.mark.parametrize(
    "text,message",
    [
        ("model: {alpha: 1}\nsplit: {holdout_fraction: 1.5}\n", "split.holdout_fraction"),
        ("gate: {primary_metric: accuracy}\n", "gate.primary_metric"),
        ("gate: {primary_metric: rmse, floor: {auc: 0.9}}\n", "gate.floor"),
        ("modle: {alpha: 1}\n", "modle"),
        ("model: [1, 2\n", "not valid YAML"),
        ("- just a list\n", "must be a mapping"),
    ],
)
def test_invalid_configs_are_usage_errors_naming_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        load_config(path, SPEC)


def test_a_missing_config_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_config(tmp_path / "nope.yaml", SPEC)


def test_fingerprint_follows_model_and_split_params_but_not_gate_rules():
    base = PipelineConfig(gate=GATE, model={"alpha": 1.0})
    assert base.fingerprint() == PipelineConfig(gate=GATE, model={"alpha": 1.0}).fingerprint()
    assert base.fingerprint() != PipelineConfig(gate=GATE, model={"alpha": 2.0}).fingerprint()
    assert base.fingerprint() != PipelineConfig(
        gate=GATE, model={"alpha": 1.0}, split={"holdout_fraction": 0.3}
    ).fingerprint()
    assert base.fingerprint() == PipelineConfig(
        model={"alpha": 1.0}, gate={"primary_metric": "r2", "margin": 0.5}
    ).fingerprint()

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score, root_mean_squared_error

from ml_service.spec import Metric, Slice
from ml_service.training.comparison import Improvement, paired_improvement, slice_results

RMSE = Metric("rmse", root_mean_squared_error, greater_is_better=False)
AUC = Metric("roc_auc", roc_auc_score, greater_is_better=True)


def noisy(rows: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.normal(150, 50, rows)
    return y, y + rng.normal(0, 50, rows)


def test_two_models_differing_by_noise_get_an_interval_that_spans_zero():
    y, champion = noisy(80)
    candidate = champion + np.random.default_rng(2).normal(0, 8, 80)
    found = paired_improvement(y, candidate, champion, RMSE, resamples=500)
    assert found.low < 0 < found.high and found.rows == 80
    assert found.point == pytest.approx(1 - root_mean_squared_error(y, candidate)
                                        / root_mean_squared_error(y, champion))


def test_a_clearly_better_model_gets_an_interval_above_zero():
    y, champion = noisy(80)
    candidate = y + (champion - y) * 0.6  # 40% smaller errors on every row
    found = paired_improvement(y, candidate, champion, RMSE, resamples=500)
    assert found.low > 0.3 and found.point == pytest.approx(0.4)


def test_the_interval_is_reproducible_and_follows_the_seed():
    y, champion = noisy(80)
    candidate = champion * 0.98 + y * 0.02
    first = paired_improvement(y, candidate, champion, RMSE, resamples=300, seed=7)
    assert paired_improvement(y, candidate, champion, RMSE, resamples=300, seed=7) == first
    assert paired_improvement(y, candidate, champion, RMSE, resamples=300, seed=8) != first


def test_the_pairing_narrows_the_interval():
    # Both models share most of their error: paired, the difference is small and
    # certain, though each model's own RMSE is uncertain by several percent.
    y, champion = noisy(80)
    candidate = champion - (champion - y) * 0.05
    found = paired_improvement(y, candidate, champion, RMSE, resamples=500)
    assert found.low > 0.04 and found.high - found.low < 0.02


def test_higher_is_better_metrics_and_degenerate_resamples():
    y = np.array([0, 1] * 20, dtype=float)
    champion = np.where(y == 1, 0.6, 0.4) + np.random.default_rng(0).normal(0, 0.3, 40)
    candidate = np.where(y == 1, 0.8, 0.2) + np.random.default_rng(1).normal(0, 0.1, 40)
    found = paired_improvement(y, candidate, champion, AUC, resamples=300)
    assert found.known and found.low > 0

    one_class = paired_improvement(np.ones(2), np.ones(2), np.ones(2), AUC, resamples=100)
    assert not one_class.known and math.isnan(one_class.point)
    assert "could not be computed on 2 rows" in one_class.describe()
    assert one_class.as_json()["low"] is None
    assert Improvement.from_json(one_class.as_json()).rows == 2


def test_slices_by_value_and_by_band_score_both_models():
    frame = pd.DataFrame({"sex": [1.0, 2.0] * 30, "age": np.arange(60, dtype=float) + 20})
    y, champion = noisy(60)
    candidate = np.where(frame["sex"] == 1, y, champion)  # perfect for sex 1 only
    found = slice_results(frame, y, candidate, champion,
                          (Slice("sex"), Slice("age", bins=(40.0, 60.0))), RMSE)
    groups = {(r.slice, r.group): r for r in found}
    assert set(groups) == {("sex", "1"), ("sex", "2"), ("age", "<40"), ("age", "40-60"),
                           ("age", ">=60")}
    assert groups["sex", "1"].candidate == 0 and groups["sex", "1"].change == 1.0
    assert groups["sex", "2"].change == 0.0 and groups["sex", "2"].rows == 30
    assert groups["age", "<40"].rows == 20 and groups["age", ">=60"].rows == 20
    alone = slice_results(frame, y, candidate, None, (Slice("sex"),), RMSE)
    assert [r.champion for r in alone] == [None, None]

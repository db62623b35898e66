from ml_service.github import summary_markdown


def test_the_summary_shows_the_interval_and_the_slices_against_the_champion():
    result = {
        "registered": False, "reason": "not better than the champion v1 beyond noise: ...",
        "candidate": {"rmse": 49.0}, "champion": {"rmse": 50.0}, "champion_version": 1,
        "primary_metric": "rmse",
        "improvement": {"metric": "rmse", "point": 0.02, "low": -0.013, "high": 0.055,
                        "confidence": 0.95, "resamples": 1000, "seed": 0, "rows": 80},
        "slices": [{"slice": "sex", "group": "1", "rows": 42, "candidate": 47.85,
                    "champion": 48.51, "change": 0.0136}],
    }
    text = summary_markdown(result)
    assert ("**rmse improvement over the champion v1:** +2.00% (95% CI -1.30% to +5.50%, "
            "paired bootstrap of 80 rows)") in text
    assert "| sex=1 | 42 | 47.8500 | 48.5100 | +1.36% |" in text

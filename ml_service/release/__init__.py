"""Release: the scoring image, the smoke test, deploy targets and promotion."""

"""A classifier model package, shaped like ``diabetes_regression``: spec, contract,
estimator, metrics. Used by the tests to drive every step with a second model."""

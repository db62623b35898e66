"""Monitoring: drift of the scoring log against the training data, and collecting
logged requests with their outcomes into new training data."""

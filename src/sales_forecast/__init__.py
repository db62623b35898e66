"""Many-models example: one sales forecast per store and product, on synthetic data."""

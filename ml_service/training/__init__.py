"""Training: data, validation, cached steps, provenance, tracking, the gate, the pipeline."""

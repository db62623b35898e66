"""Reusable MLOps machinery: CLI, settings, pipeline runner, registry and gate.

Nothing here is specific to the diabetes model; it works with whatever the model
package in ``src/`` declares.
"""

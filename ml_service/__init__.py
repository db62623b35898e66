"""Reusable MLOps machinery, one package per lifecycle stage.

``training`` (steps, cache, provenance, tracking, gate), ``serving`` (app,
request validation, scoring log), ``release`` (image, smoke test, deploy
targets, promotion), ``monitoring`` (drift, collect), ``registry`` (MLflow),
and ``cli`` (thin Typer sub-apps). Nothing here knows a particular model: the
model is a :class:`ml_service.spec.ModelSpec` found through the ``mlops.models``
entry points of the installed packages.
"""

"""The diabetes ridge model: the part of the template a data scientist owns.

Adapt the template to another model by writing a package like this one: a
data contract (``schema.py``), an estimator factory (``train.py``), metrics and
plots (``evaluate.py``), a config file, and the spec that ties them together
(``spec.py``), registered as an ``mlops.models`` entry point in pyproject.toml.
The machinery in ``ml_service`` reads only the spec.
"""

"""The diabetes ridge model: the part of the template a data scientist owns.

Adapt the template to another model by editing this package (the data contract
in ``schema.py``, the estimator in ``train.py``, the metrics in
``evaluate.py``) and ``config.yaml``. The machinery in ``ml_service`` only uses
the names exported here.
"""

from diabetes_regression.schema import CONTRACT, DataContract, Feature

__all__ = ["CONTRACT", "DataContract", "Feature"]

"""The data contract of one partition's model: its features and target.

The partition keys (``store``, ``product``) and ``week`` are columns of the
dataset but not inputs of a partition's model: the keys choose the model.
"""

from __future__ import annotations

from ml_service.contract import DataContract, Feature

CONTRACT = DataContract(
    name="sales",
    features=(
        Feature("price", "Shelf price of the product that week, in currency units", 0.01, 1000.0,
                (0.5, 200.0)),
        Feature("promotion", "1 if the product was on promotion that week, else 0", 0.0, 1.0,
                (0.0, 1.0), allowed_values=(0.0, 1.0)),
        Feature("temperature", "Mean outdoor temperature at the store that week, in degC",
                -50.0, 60.0, (-20.0, 40.0)),
    ),
    target=Feature("sales", "Units sold that week", 0.0, 1e6, (0.0, 1e5)),
    min_rows=20,
)

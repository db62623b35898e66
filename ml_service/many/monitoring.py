"""Drift of a many-models set: the logged requests against the training rows of their partitions.

A set's scoring log names each row's partition. The reference is what the
served set saw in training for those same partitions (only their shards are
read), with the prediction of each partition's own model on its rows; so a
log that covers ten stores of a thousand is compared with those ten stores,
not with the whole chain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ml_service.errors import UsageError
from ml_service.many import dataset as ds
from ml_service.monitoring.drift import Columns
from ml_service.spec import ModelSpec

if TYPE_CHECKING:
    import pandas as pd

    from ml_service.sets import ModelSet


def set_columns(spec: ModelSpec, models: ModelSet, root: str,
                logged: pd.DataFrame) -> tuple[Columns, Columns, int]:
    """(reference, current, partitions compared) for ``logged`` rows of a set.

    Raises:
        UsageError: If the log does not name partitions, or none of its
            partitions has training rows at ``root`` and a model in the set.
    """
    keys = spec.partition_keys
    absent = [k for k in keys if k not in logged.columns]
    if absent:
        raise UsageError(f"the scoring log has no partition column(s) {', '.join(absent)}: "
                         "it was not written by a many-models set with these keys")
    names = spec.contract.feature_names
    seen = set(ds.partition_keys_of(logged, keys))
    training = ds.read_dataset(root, keys, seen)
    x = training[names].to_numpy(dtype=float, na_value=np.nan) if len(training) else None
    prediction = np.full(len(training), np.nan)
    compared: set[str] = set()
    if x is not None:
        groups = training.groupby(ds.partition_keys_of(training, keys)).indices
        for group, index in groups.items():
            key = str(group)
            if key in models:
                prediction[index] = spec.predict(models.load(key), x[index])
                compared.add(key)
    if not compared:
        raise UsageError(f"none of the {len(seen)} partitions in the scoring log has training "
                         f"rows at {root} and a model in version {models.version}")
    kept = ~np.isnan(prediction)
    reference = {name: training[name].to_numpy()[kept] for name in names}
    reference["prediction"] = prediction[kept]
    rows = ds.partition_keys_of(logged, keys).isin(compared).to_numpy()
    current = {name: logged[name].to_numpy()[rows] for name in [*names, "prediction"]}
    return reference, current, len(compared)

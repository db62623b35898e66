"""A model set on disk: every partition's model in one archive, plus an index.

::

    <dir>/models.zip      one stored (uncompressed) entry per partition: <key>.pkl
    <dir>/index.parquet   key, decision, reason, source_version (0: the version
                          holding this set), rows, cache_key,
                          sha256 of the entry, the model's metrics on the
                          partition's latest holdout (metric.<name>)
    <dir>/index.json      key -> sha256 and source_version, for the scoring service
    <dir>/metadata.json   model name, partition keys, contract, output,
                          prediction range, counts, rule, sha256 of the other files

A set is one registered version: models of partitions that kept their
champion are copied byte for byte from the previous set, with their source
version. Entries are pickles (measured: skops is about 40x slower to write and
20x larger per small model, which a set of 10,000 cannot afford), so nothing
is unpickled before its bytes match the sha256 of the index, whose own sha256
is in the metadata; :class:`ModelSet` checks both.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_service.bundle import sha256_file
from ml_service.errors import MlopsError, UsageError

MODELS, INDEX, METADATA = "models.zip", "index.parquet", "metadata.json"
#: The index the scoring service reads (it has no pandas): key -> sha256, source version.
SERVING_INDEX = "index.json"


@dataclass
class Entry:
    """One partition's row of the index, and its model bytes."""

    key: str
    decision: str
    reason: str
    source_version: int
    rows: int
    cache_key: str
    metrics: dict[str, float]
    model: bytes


def write_set(directory: Path, entries: Iterable[Entry], metadata: dict[str, Any]) -> Path:
    """Write a set to ``directory`` (created) and return the metadata path."""
    import pandas as pd

    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    with zipfile.ZipFile(directory / MODELS, "w", compression=zipfile.ZIP_STORED) as archive:
        for entry in entries:
            archive.writestr(f"{entry.key}.pkl", entry.model)
            rows.append({"key": entry.key, "decision": entry.decision, "reason": entry.reason,
                         "source_version": entry.source_version, "rows": entry.rows,
                         "cache_key": entry.cache_key,
                         "sha256": hashlib.sha256(entry.model).hexdigest(),
                         **{f"metric.{k}": v for k, v in entry.metrics.items()}})
    pd.DataFrame(rows).to_parquet(directory / INDEX, index=False)
    serving = {r["key"]: {"sha256": r["sha256"], "source_version": r["source_version"]}
               for r in rows}
    (directory / SERVING_INDEX).write_text(json.dumps(serving, sort_keys=True))
    metadata = {**metadata, "partitions": len(rows),
                "models_sha256": sha256_file(directory / MODELS),
                "index_sha256": sha256_file(directory / INDEX),
                "serving_index_sha256": sha256_file(directory / SERVING_INDEX)}
    path = directory / METADATA
    path.write_text(json.dumps(metadata, indent=2, sort_keys=True))
    return path


class ModelSet:
    """A set read from ``directory``: its index, and each partition's model on demand.

    Raises:
        MlopsError: If a file is missing or does not match its recorded sha256.
    """

    def __init__(self, directory: Path, version: int | None = None):
        import pandas as pd

        self.directory = directory
        self.version = version
        what = f"the model set in {directory}"
        try:
            self.metadata: dict[str, Any] = json.loads((directory / METADATA).read_text())
        except FileNotFoundError:
            raise MlopsError(f"{what} has no {METADATA}: not a many-models set") from None
        for name, key in ((MODELS, "models_sha256"), (INDEX, "index_sha256"),
                          (SERVING_INDEX, "serving_index_sha256")):
            if not (directory / name).is_file():
                raise MlopsError(f"{what} has no {name}")
            if sha256_file(directory / name) != self.metadata.get(key):
                raise MlopsError(f"{what}: {name} does not match the sha256 of its metadata; "
                                 "refusing to load it")
        self.index = pd.read_parquet(directory / INDEX).set_index("key")
        # Looked up per partition by position: building a dict per row costs
        # more than scoring a chunk's partitions at 10,000 of them.
        self._position = {str(k): i for i, k in enumerate(self.index.index)}
        self._sha256 = self.index["sha256"].to_numpy()
        self._source_version = self.index["source_version"].to_numpy()
        self._cache_key = self.index["cache_key"].to_numpy()
        self._metric_columns = [c for c in self.index.columns if c.startswith("metric.")]
        self._archive = zipfile.ZipFile(directory / MODELS)

    @property
    def keys(self) -> list[str]:
        return list(self.index.index)

    def __contains__(self, key: str) -> bool:
        return key in self._position

    def row(self, key: str) -> dict[str, Any]:
        """``key``'s row of the index (KeyError if the set has no such partition)."""
        return {str(c): v for c, v in self.index.iloc[self._position[key]].items()}

    def model_bytes(self, key: str) -> bytes:
        """The checked bytes of ``key``'s model.

        Raises:
            UsageError: If the set has no model for ``key``.
            MlopsError: If the bytes do not match the index.
        """
        position = self._position.get(key)
        if position is None:
            raise UsageError(f"no model for partition {key} in version {self.version}")
        data = self._archive.read(f"{key}.pkl")
        if hashlib.sha256(data).hexdigest() != self._sha256[position]:
            raise MlopsError(f"the model of partition {key} does not match the set's index")
        return data

    def load(self, key: str) -> Any:
        """``key``'s fitted model."""
        # Every caller opens a set from a directory verified against its signature first
        # (registry.signed.download_verified, via download_set or export_set); the entry
        # itself is checked against the signed index by model_bytes.
        return pickle.loads(self.model_bytes(key))  # noqa: S301 - signed set, entry hash-checked

    def source_version(self, key: str) -> int:
        """The version whose training produced ``key``'s model (0 if unknown here)."""
        value = int(self._source_version[self._position[key]])
        return value or (self.version or 0)

    def metrics(self, key: str) -> dict[str, float]:
        row = self.row(key)
        return {c.removeprefix("metric."): float(row[c]) for c in self._metric_columns
                if row[c] == row[c]}  # NaN: a metric this model was not scored on

    def cache_key(self, key: str) -> str:
        return str(self._cache_key[self._position[key]])

    def close(self) -> None:
        self._archive.close()

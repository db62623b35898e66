"""The partitioned Parquet dataset of a many-models spec.

Layout (Hive partitioning by the first partition key; the other keys are
columns of the files)::

    <root>/store=1/part-0.parquet
    <root>/store=2/part-0.parquet

``root`` is a local path or an fsspec URI (``abfs://``, ``s3://`` with the
matching fsspec package installed). A *shard* is one first-key directory:
the unit a worker reads, so the driver lists directories and never reads data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ml_service.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

    from ml_service.contract import DataContract


@dataclass(frozen=True)
class Shard:
    """One first-key directory of the dataset."""

    root: str
    key: str
    value: str

    @property
    def path(self) -> str:
        return f"{self.root.rstrip('/')}/{self.key}={self.value}"


def _filesystem(root: str) -> tuple[Any, str]:
    import fsspec.core

    fs, path = fsspec.core.url_to_fs(root)
    return fs, str(path)


def list_shards(root: str, keys: Sequence[str]) -> list[Shard]:
    """The shards under ``root``, sorted by their key value (numbers numerically).

    Raises:
        UsageError: If ``root`` does not exist or holds no ``<key>=<value>`` directory.
    """
    fs, path = _filesystem(root)
    if "://" not in root:
        root = str(Path(root).resolve())  # workers (Ray's) may run in another directory
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        raise UsageError(f"no dataset at {root}: generate one (make data-many) or set "
                         "MLOPS_DATA_PATH") from None
    prefix = f"{keys[0]}="
    values = [str(e["name"]).rstrip("/").rsplit("/", 1)[-1][len(prefix):] for e in entries
              if e["type"] == "directory"
              and str(e["name"]).rstrip("/").rsplit("/", 1)[-1].startswith(prefix)]
    if not values:
        raise UsageError(f"{root} holds no '{prefix}<value>' directories: a many-models dataset "
                         f"is Parquet partitioned by its first key ({keys[0]})")
    values.sort(key=lambda v: (0, float(v), v) if _is_number(v) else (1, 0.0, v))
    return [Shard(root, keys[0], v) for v in values]


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def read_shard(shard: Shard, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Every row of ``shard``, with its first-key column put back in front."""
    import pandas as pd
    import pyarrow.parquet as pq

    fs, path = _filesystem(shard.path)
    table = pq.read_table(path, filesystem=fs, columns=list(columns) if columns else None)
    frame: pd.DataFrame = table.to_pandas()
    value: Any = shard.value
    if _is_number(value):
        value = int(value) if float(value).is_integer() else float(value)
    frame.insert(0, shard.key, pd.Series(value, index=frame.index))
    return frame


def partition_key(keys: Sequence[str], values: Sequence[Any]) -> str:
    """The key string of one partition, e.g. ``store=1/product=7``."""
    return "/".join(f"{k}={_plain(v)}" for k, v in zip(keys, values, strict=True))


def _plain(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value.item() if isinstance(value, np.generic) else value)


def partitions(frame: pd.DataFrame, keys: Sequence[str]) -> Iterator[tuple[str, pd.DataFrame]]:
    """(key string, rows) of each partition in ``frame``, in key order."""
    for values, rows in frame.groupby(list(keys), sort=True):
        yield partition_key(keys, values if isinstance(values, tuple) else (values,)), rows


def row_hash(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """A 64-bit hash of each row's values in ``columns`` (vectorised, stable across runs)."""
    import pandas as pd

    values = frame[list(columns)].astype(float).reset_index(drop=True)
    return pd.util.hash_pandas_object(values, index=False).to_numpy()


def holdout_mask(frame: pd.DataFrame, fraction: float, contract: DataContract) -> np.ndarray:
    """True for holdout rows: by a hash of each row's features, as the single-model split.

    The assignment depends on the row's own content only, so a row stays on
    the same side when rows are added to its partition.
    """
    hashes = row_hash(frame, contract.feature_names)
    return (hashes / float(2**64)) < fraction


def digest(frame: pd.DataFrame, contract: DataContract) -> str:
    """SHA-256 of one partition's contract columns, row order kept."""
    hashes = row_hash(frame, contract.columns)
    return hashlib.sha256(hashes.tobytes()).hexdigest()


def write_dataset(frame: pd.DataFrame, root: Path, keys: Sequence[str]) -> int:
    """Write ``frame`` as the dataset layout above (replacing ``root``); the shard count."""
    import shutil

    if root.exists():
        shutil.rmtree(root)
    count = 0
    for value, rows in frame.groupby(keys[0], sort=True):
        directory = root / f"{keys[0]}={_plain(value)}"
        directory.mkdir(parents=True)
        rows.drop(columns=keys[0]).to_parquet(directory / "part-0.parquet", index=False)
        count += 1
    return count

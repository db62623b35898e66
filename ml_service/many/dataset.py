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
    """Write ``frame`` as the dataset layout above, replacing ``root``; the shard count.

    The new dataset is written next to ``root`` and swapped in only when
    complete, so a failure (a full disk) leaves the old one as it was.
    """
    import shutil
    import tempfile

    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        count = 0
        for value, rows in frame.groupby(keys[0], sort=True):
            directory = staging / f"{keys[0]}={_plain(value)}"
            directory.mkdir()
            rows.drop(columns=keys[0]).to_parquet(directory / "part-0.parquet", index=False)
            count += 1
        old = root.with_name(f".{root.name}-old")
        if root.exists():
            shutil.rmtree(old, ignore_errors=True)
            root.rename(old)
        staging.rename(root)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return count


def read_dataset(root: str, keys: Sequence[str],
                 partitions: set[str] | None = None) -> pd.DataFrame:
    """The rows of the dataset at ``root`` (only of ``partitions``' keys, if given).

    Only the shards those partitions live in are read.

    Raises:
        UsageError: If ``root`` holds no dataset.
    """
    import pandas as pd

    shards = list_shards(root, keys)
    if partitions is not None:
        first = {key.split("/", 1)[0] for key in partitions}
        shards = [s for s in shards if f"{s.key}={s.value}" in first]
    frames = [read_shard(shard) for shard in shards]
    if not frames:
        return pd.DataFrame(columns=list(keys))
    frame = pd.concat(frames, ignore_index=True)
    if partitions is not None:
        frame = frame[partition_keys_of(frame, keys).isin(partitions).to_numpy()]
    return frame.reset_index(drop=True)


def partition_keys_of(frame: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """Each row's partition key string (``store=1/product=7``)."""
    import pandas as pd

    parts = [frame[k].map(_plain).astype(str) for k in keys]
    joined = pd.Series([f"{keys[0]}="] * len(frame), index=frame.index) + parts[0]
    for name, part in zip(keys[1:], parts[1:]):
        joined = joined + f"/{name}=" + part
    return joined

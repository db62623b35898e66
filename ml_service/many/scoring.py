"""Batch scoring of a many-models set: each partition by its own model, on the same engine.

Workers read their shards of the input dataset (same layout as training, the
target column optional), find each partition's model in the set, and write
``<out>/<first key>=<value>/part-0.parquet`` with the other partition keys, any
other non-feature columns (such as ``week``), ``prediction`` and
``model_version`` (the version whose training produced that partition's
model). Rows of a partition the set has no model for are not scored; they
are counted and named in the result.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_service.many import dataset as ds
from ml_service.many.work import chunk_shards

if TYPE_CHECKING:
    from ml_service.many.engines import Engine
    from ml_service.spec import ModelSpec


@dataclass(frozen=True)
class ScoreTask:
    """Shards to score with the set in ``set_dir`` (a path the workers can read)."""

    shards: tuple[ds.Shard, ...]
    set_dir: str
    version: int
    keys: tuple[str, ...]
    features: tuple[str, ...]
    output: str
    out: str


@dataclass
class ScoreResult:
    """What a batch-scoring run did; ``as_json`` is its ``--json-out``."""

    version: int
    rows: int = 0
    partitions: int = 0
    unscored_rows: int = 0
    missing: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    seconds: float = 0.0
    engine: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def score_chunk(task: ScoreTask) -> ScoreResult:
    """Score every partition of ``task``'s shards and write their predictions (on a worker)."""
    import numpy as np

    from ml_service.sets import ModelSet
    from ml_service.many.checks import bad_rows
    from ml_service.spec import predictions

    from ml_service.contract import DataContract

    models = ModelSet(Path(task.set_dir), task.version)
    contract = DataContract.from_json(models.metadata["contract"])
    result = ScoreResult(task.version)
    features = list(task.features)
    try:
        for shard in task.shards:
            frame = ds.read_shard(shard)
            absent = [c for c in (*task.keys, *features) if c not in frame.columns]
            if absent:
                result.invalid.append(f"{shard.key}={shard.value}: missing columns "
                                      f"{', '.join(absent)}")
                result.unscored_rows += len(frame)
                continue
            x = frame[features].to_numpy(dtype=float, na_value=np.nan)
            prediction = np.full(len(frame), np.nan)
            version = np.zeros(len(frame), dtype=np.int64)
            contract_rows = bad_rows(frame, contract, target=False)
            groups: dict[Any, Any] = frame.groupby(list(task.keys), sort=True).indices
            for values, index in groups.items():
                key = ds.partition_key(task.keys, values if isinstance(values, tuple) else
                                       (values,))
                if key not in models:
                    result.missing.append(key)
                    result.unscored_rows += len(index)
                    continue
                good = index[~contract_rows[index]]
                if len(good) < len(index):
                    result.invalid.append(f"{key}: {len(index) - len(good)} rows break the "
                                          "contract")
                    result.unscored_rows += len(index) - len(good)
                if len(good):
                    prediction[good] = predictions(models.load(key), x[good], task.output)
                    version[good] = models.source_version(key)
                    result.partitions += 1
                    result.rows += len(good)
            scored = version > 0
            target = Path(task.out) / f"{shard.key}={shard.value}"
            target.mkdir(parents=True, exist_ok=True)
            # The first key is the directory's name, as in the input layout.
            kept = [c for c in frame.columns if c not in features and c != shard.key]
            out = frame.loc[scored, kept].copy()
            out["prediction"] = prediction[scored]
            out["model_version"] = version[scored]
            out.to_parquet(target / "part-0.parquet", index=False)
    finally:
        models.close()
    return result


def score_many(root: str, out: Path, set_dir: Path, version: int, spec: ModelSpec,
               engine: Engine, chunks_per_worker: int = 4) -> ScoreResult:
    """Score the dataset at ``root`` with the set in ``set_dir``; write under ``out``."""
    import shutil

    from ml_service.sets import ModelSet

    started = time.perf_counter()
    models = ModelSet(set_dir, version)  # checks the files before any worker starts
    keys = tuple(models.metadata["partition_keys"])
    features = tuple(f["name"] for f in models.metadata["contract"]["features"])
    output = str(models.metadata.get("output", spec.output))
    models.close()
    shards = ds.list_shards(root, keys)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tasks = [ScoreTask(chunk, str(set_dir), version, keys, features, output, str(out))
             for chunk in chunk_shards(shards, engine.workers, chunks_per_worker)]
    total = ScoreResult(version, engine=engine.name)
    for part in engine.map(score_chunk, tasks):
        total.rows += part.rows
        total.partitions += part.partitions
        total.unscored_rows += part.unscored_rows
        total.missing += part.missing
        total.invalid += part.invalid
    total.missing.sort()
    total.seconds = round(time.perf_counter() - started, 3)
    return total

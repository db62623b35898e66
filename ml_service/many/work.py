"""The work of one chunk of shards: validate, split, train, evaluate, gate each partition.

:func:`train_chunk` runs on a worker (a joblib process or a Ray task), reads
its own shards, and returns one :class:`Outcome` per partition. Everything it
needs travels in its :class:`ChunkTask`: the spec (its package must be
installed where the workers run), the config, and the champion's entry of
each partition it may meet (model bytes and cache key).

Decisions, per partition:

- ``unchanged``: same data, params and code as its champion: not retrained, kept.
- ``new``: no champion yet, and the candidate meets the floor.
- ``promoted``: the candidate beats the champion on the same holdout rows.
- ``kept``: the candidate does not; the champion stays.
- ``invalid``: the data breaks the contract; the champion (if any) stays.
- ``failed``: training or scoring raised; the champion (if any) stays.
- ``rejected``: no champion and the candidate misses the floor: no model.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ml_service.many import checks
from ml_service.many import dataset as ds
from ml_service.training.gate import decide

if TYPE_CHECKING:
    import pandas as pd

    from ml_service.spec import ModelSpec
    from ml_service.training.config import PipelineConfig

KEEPS_CHAMPION = ("unchanged", "kept", "invalid", "failed")
NEW_MODEL = ("new", "promoted")


@dataclass(frozen=True)
class ChampionEntry:
    """What a worker needs of one partition's champion."""

    model: bytes
    cache_key: str
    version: int


@dataclass(frozen=True)
class ChunkTask:
    """One unit of work: some shards, and what is needed to gate their partitions."""

    shards: tuple[ds.Shard, ...]
    spec: ModelSpec
    config: PipelineConfig
    code_version: str
    champions: dict[str, ChampionEntry] = field(default_factory=dict)
    champion_version: int | None = None
    validate_with_gx: bool = True


@dataclass
class Outcome:
    """What happened to one partition."""

    key: str
    decision: str
    reason: str
    rows: int = 0
    holdout_rows: int = 0
    cache_key: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    candidate: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] = field(default_factory=dict)
    model: bytes | None = None

    @property
    def keeps_champion(self) -> bool:
        return self.decision in KEEPS_CHAMPION


@dataclass
class ChunkResult:
    """A chunk's outcomes, and its Great Expectations summary."""

    outcomes: list[Outcome]
    validation: list[str]
    seconds: float


def train_chunk(task: ChunkTask) -> ChunkResult:
    """Train and gate every partition of ``task``'s shards (runs on a worker)."""
    import pandas as pd

    started = time.perf_counter()
    outcomes: list[Outcome] = []
    spec, keys = task.spec, task.spec.partition_keys
    frames = []
    for shard in task.shards:
        frame = ds.read_shard(shard)
        problems = checks.keys_present(frame, keys)
        if problems:
            outcomes.extend(_invalid_shard(task, shard, "; ".join(problems)))
        else:
            frames.append(frame)
    validation: list[str] = []
    if frames:
        batch = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        if task.validate_with_gx:
            failed = _gx_failures(batch, spec)
            if failed:
                names = ", ".join(f"{s.key}={s.value}" for s in task.shards)
                validation.append(f"{names}: {failed}")
        outcomes.extend(_partitions(task, batch))
    return ChunkResult(outcomes, validation, time.perf_counter() - started)


def _gx_failures(frame: pd.DataFrame, spec: ModelSpec) -> str:
    """Validate a chunk as one batch with the contract's expectation suite: what failed."""
    from dataclasses import replace

    from ml_service.training.validation import validate_frame

    contract = spec.contract
    # Row counts are a per-partition rule (checked below), not a batch one.
    report = validate_frame(frame[contract.columns] if set(contract.columns) <= set(frame.columns)
                            else frame, replace(contract, min_rows=0))
    return "" if report.success else report.summary()


def _invalid_shard(task: ChunkTask, shard: ds.Shard, reason: str) -> list[Outcome]:
    prefix = f"{shard.key}={shard.value}/"
    return [Outcome(key, "invalid", reason) for key in task.champions if key.startswith(prefix)]


def _partitions(task: ChunkTask, frame: pd.DataFrame) -> list[Outcome]:
    """Every partition of ``frame``: the row-wise work is done once, vectorised."""
    import numpy as np

    contract, keys = task.spec.contract, task.spec.partition_keys
    missing = [c for c in contract.columns if c not in frame.columns]
    groups = frame.groupby(list(keys), sort=True).indices
    if missing:
        return [Outcome(ds.partition_key(keys, k if isinstance(k, tuple) else (k,)), "invalid",
                        f"missing columns: {', '.join(missing)}") for k in groups]
    arrays = _Arrays(
        x=frame[contract.feature_names].to_numpy(dtype=float, na_value=np.nan),
        y=frame[contract.target.name].to_numpy(dtype=float, na_value=np.nan),
        features_hash=ds.row_hash(frame, contract.feature_names),
        rows_hash=ds.row_hash(frame, contract.columns),
        bad=checks.bad_rows(frame, contract),
    )
    fingerprint = task.config.fingerprint()
    outcomes = []
    for values, index in groups.items():
        key = ds.partition_key(keys, values if isinstance(values, tuple) else (values,))
        outcomes.append(_partition(task, key, index, arrays, frame, fingerprint))
    return outcomes


@dataclass
class _Arrays:
    x: Any
    y: Any
    features_hash: Any
    rows_hash: Any
    bad: Any


def _partition(task: ChunkTask, key: str, index: Any, arrays: _Arrays, frame: pd.DataFrame,
               fingerprint: str) -> Outcome:
    import hashlib

    spec, config = task.spec, task.config
    contract = spec.contract
    champion = task.champions.get(key)
    rows = len(index)
    if rows < contract.min_rows or arrays.bad[index].any():
        problems = checks.partition_problems(frame.iloc[index], contract)
        return Outcome(key, "invalid", "; ".join(problems) or "breaks the contract", rows=rows)
    digest = hashlib.sha256(arrays.rows_hash[index].tobytes()).hexdigest()
    cache_key = f"{digest}:{fingerprint}:{task.code_version}"
    if champion is not None and champion.cache_key == cache_key:
        return Outcome(key, "unchanged", f"same data, params and code as version "
                       f"{champion.version}: not retrained", rows=rows, cache_key=cache_key)
    mask = (arrays.features_hash[index] / float(2**64)) < config.split.holdout_fraction
    train, holdout = index[~mask], index[mask]
    if not len(train) or not len(holdout):
        return Outcome(key, "invalid", f"the split of {rows} rows left an empty train or "
                       "holdout set", rows=rows, cache_key=cache_key)
    x_holdout, y_holdout = arrays.x[holdout], arrays.y[holdout]
    try:
        model = spec.build_estimator(config.model)
        model.fit(arrays.x[train], arrays.y[train])
        candidate = spec.score(y_holdout, spec.predict(model, x_holdout))
        champion_metrics = None
        if champion is not None:
            # The champion set was verified against its signature when it was downloaded
            # (many.pipeline.download_set), then each entry against the signed index.
            old = pickle.loads(champion.model)  # noqa: S301 - signed set, entry hash-checked
            champion_metrics = spec.score(y_holdout, spec.predict(old, x_holdout))
    except Exception as exc:  # noqa: BLE001 - one partition's failure must not stop the set
        return Outcome(key, "failed", f"{type(exc).__name__}: {exc}", rows=rows,
                       cache_key=cache_key)
    higher = {m.name for m in spec.metrics if m.greater_is_better}
    verdict = decide(candidate, champion_metrics, config.gate, higher, False,
                     champion.version if champion else None)
    outcome = Outcome(key, "", verdict.reason, rows=rows, holdout_rows=len(holdout),
                      cache_key=cache_key, candidate=candidate,
                      champion=champion_metrics or {})
    if verdict.register:
        outcome.decision = "new" if champion is None else "promoted"
        outcome.metrics = candidate
        outcome.model = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    else:
        outcome.decision = "rejected" if champion is None else "kept"
        outcome.metrics = champion_metrics or {}
    return outcome


def chunk_shards(shards: Sequence[ds.Shard], workers: int,
                 chunks_per_worker: int) -> list[tuple[ds.Shard, ...]]:
    """Contiguous groups of shards, about ``workers * chunks_per_worker`` of them."""
    count = max(1, min(len(shards), workers * chunks_per_worker))
    size, extra = divmod(len(shards), count)
    chunks, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        chunks.append(tuple(shards[start:end]))
        start = end
    return [c for c in chunks if c]


def describe(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Counts by decision."""
    counts: dict[str, Any] = {}
    for outcome in outcomes:
        counts[outcome.decision] = counts.get(outcome.decision, 0) + 1
    return counts

"""Train a many-models set: chunks on an engine, a gate per partition, one registered version.

The driver lists the dataset's shards, hands each chunk the champion entries
of its partitions, and assembles what comes back into a set: new models for
``new`` and ``promoted`` partitions, the champion's bytes (and source
version) for the others. The set is registered as one version when anything
changed; alias ``champion`` moves to it only if it passes the config's
``partitions`` rule. An unchanged dataset registers nothing.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_service.errors import UsageError
from ml_service.many import dataset as ds
from ml_service.many.results import SetResult
from ml_service.registry.signed import download_set
from ml_service.sets import Entry, ModelSet, write_set
from ml_service.many.work import NEW_MODEL, ChampionEntry, ChunkTask, Outcome, chunk_shards, \
    train_chunk
from ml_service.training.provenance import code_version

if TYPE_CHECKING:
    from ml_service.many.engines import Engine
    from ml_service.registry import Registry
    from ml_service.settings import Settings
    from ml_service.spec import ModelSpec
    from ml_service.training.config import PipelineConfig

logger = logging.getLogger(__name__)


def run_many(root: str, spec: ModelSpec, config: PipelineConfig, settings: Settings,
             registry: Registry, engine: Engine,
             progress: Callable[[int, int], None] | None = None) -> SetResult:
    """Train, gate and register the set of ``spec`` on the dataset at ``root``.

    Raises:
        UsageError: If the spec has no partition keys or the dataset is missing.
    """
    if not spec.partition_keys:
        raise UsageError(f"model '{spec.name}' has no partition_keys: use `mlops run`")
    started = time.perf_counter()
    shards = ds.list_shards(root, spec.partition_keys)
    with tempfile.TemporaryDirectory() as tmp, registry.lock():
        previous = registry.alias_version("champion")
        champion = download_set(registry, previous, Path(tmp) / "champion") if previous else None
        champions = _champion_entries(champion) if champion else {}
        version = code_version(spec.package) if spec.package else "unversioned"
        chunks = chunk_shards(shards, engine.workers, config.partitions.chunks_per_worker)
        by_shard: dict[str, dict[str, ChampionEntry]] = {}
        for key, entry in champions.items():
            by_shard.setdefault(key.split("/", 1)[0], {})[key] = entry
        tasks = [ChunkTask(chunk, spec, config, version,
                           {k: e for s in chunk for k, e in by_shard.get(f"{s.key}={s.value}",
                                                                         {}).items()},
                           previous)
                 for chunk in chunks]
        outcomes: list[Outcome] = []
        validation: list[str] = []
        for done, result in enumerate(engine.map(train_chunk, tasks), 1):
            outcomes.extend(result.outcomes)
            validation.extend(result.validation)
            if progress:
                progress(done, len(tasks))
        seen = {o.key for o in outcomes}
        # A champion partition absent from the data keeps its model.
        outcomes += [Outcome(k, "invalid", "no rows in this dataset") for k in champions
                     if k not in seen]
        outcomes.sort(key=lambda o: o.key)
        counts: dict[str, int] = {}
        for outcome in outcomes:
            counts[outcome.decision] = counts.get(outcome.decision, 0) + 1
        entries = _entries(outcomes, champion, config.gate.primary_metric)
        passed, rule = _rule(outcomes, entries, config, spec)
        worst = _worst(entries, spec)
        changed = any(o.decision in NEW_MODEL for o in outcomes)
        result = SetResult(
            registered=False, version=None, champion=False, reason="", partitions=len(outcomes),
            counts=counts, rule=rule, worst=worst, engine=engine.name, chunks=len(tasks),
            seconds=0.0, previous_version=previous,
            validation=validation,
            problems=[f"{o.key}: {o.decision}: {o.reason}" for o in outcomes
                      if o.decision in ("invalid", "failed", "rejected")][:50],
        )
        if not changed:
            result.reason = ("no partition has a new model (all unchanged or kept): nothing "
                             "new to register")
        else:
            metadata = {"model_name": registry.name, "partition_keys": list(spec.partition_keys),
                        "contract": spec.contract.to_json(), "output": spec.output,
                        "prediction_range": list(spec.prediction_range), "counts": counts,
                        "rule": rule, "primary_metric": config.gate.primary_metric}
            result.run_id, result.version = _log_and_register(
                registry, spec, Path(tmp) / "set", entries, metadata, result, passed, config)
            result.registered, result.champion = True, passed
            result.reason = (f"registered version {result.version} with {len(entries)} models; "
                             + ("alias 'champion' moved to it" if passed else
                                "alias 'champion' unchanged: the set fails the rule"))
        if champion is not None:
            champion.close()
    result.seconds = round(time.perf_counter() - started, 3)
    logger.info("many models: %s", result.reason)
    return result


def _champion_entries(champion: ModelSet) -> dict[str, ChampionEntry]:
    return {key: ChampionEntry(champion.model_bytes(key),
                               champion.cache_key(key),
                               champion.source_version(key))
            for key in champion.keys}


def _entries(outcomes: list[Outcome], champion: ModelSet | None, primary: str) -> list[Entry]:
    """The set's models: new ones, and the champion's for every partition that keeps it."""
    entries = []
    for o in outcomes:
        if o.model is not None:
            entries.append(Entry(o.key, o.decision, o.reason, 0, o.rows, o.cache_key, o.metrics,
                                 o.model))
        elif champion is not None and o.key in champion and o.keeps_champion:
            metrics = o.metrics or champion.metrics(o.key)
            cache_key = o.cache_key if o.decision == "unchanged" else champion.cache_key(o.key)
            entries.append(Entry(o.key, o.decision, o.reason, champion.source_version(o.key),
                                 o.rows, cache_key, metrics, champion.model_bytes(o.key)))
    return entries


def _rule(outcomes: list[Outcome], entries: list[Entry], config: PipelineConfig,
          spec: ModelSpec) -> tuple[bool, str]:
    from ml_service.training.gate import floor_violations

    total = len(outcomes) or 1
    higher = {m.name for m in spec.metrics if m.greater_is_better}
    passing = sum(1 for e in entries if not floor_violations(e.metrics, config.gate.floor, higher))
    invalid = sum(1 for o in outcomes if o.decision == "invalid")
    rules = config.partitions
    ok = (passing / total >= rules.min_passing_fraction
          and invalid / total <= rules.max_invalid_fraction)
    text = (f"{passing}/{total} partitions have a model meeting the floor (need "
            f"{rules.min_passing_fraction:.0%}); {invalid} invalid (at most "
            f"{rules.max_invalid_fraction:.0%})")
    return ok, ("passed: " if ok else "failed: ") + text


def _worst(entries: list[Entry], spec: ModelSpec) -> dict[str, float]:
    worst: dict[str, float] = {}
    for metric in spec.metrics:
        values = [e.metrics[metric.name] for e in entries if metric.name in e.metrics]
        if values:
            worst[metric.name] = min(values) if metric.greater_is_better else max(values)
    return worst


def _log_and_register(registry: Registry, spec: ModelSpec, directory: Path,
                      entries: list[Entry], metadata: dict[str, Any], result: SetResult,
                      champion: bool, config: PipelineConfig) -> tuple[str, int]:
    import mlflow

    from ml_service.many.card import build_set_card
    from ml_service.registry.signed import sign_version
    from ml_service.training.provenance import git_commit
    from ml_service.training.tracking import log_card

    with mlflow.start_run(experiment_id=registry.experiment_id()) as run:
        commit, _ = git_commit()
        mlflow.set_tags({"mlops.kind": "model-set", "mlflow.source.git.commit": commit})
        mlflow.log_params({f"model.{k}": v for k, v in config.model.items()}
                          | {"engine": result.engine, "chunks": result.chunks})
        mlflow.log_metrics({f"partitions.{k}": v for k, v in result.counts.items()}
                           | {f"worst.{k}": v for k, v in result.worst.items()}
                           | {"partitions": result.partitions})
        run_id = run.info.run_id
        # New models have source_version 0: "the version that holds this set".
        write_set(directory, entries, {**metadata, "run_id": run_id, "git_commit": commit})
        mlflow.log_artifacts(str(directory), artifact_path="set")
        tags = {"kind": "model-set", "run_id": run_id, "git_commit": commit,
                "set.partitions": result.partitions, "set.rule": result.rule[:5000],
                "set.counts": json.dumps(result.counts, sort_keys=True),
                **{f"worst.{k}": f"{v:.6g}" for k, v in result.worst.items()}}
        version = registry.register(f"runs:/{run_id}/set", run_id, tags, champion=champion)
        mlflow.set_tag("registered_version", str(version))
        card = build_set_card(spec, config, entries, result, registry.name, version, run_id,
                              commit, champion)
        card_dir = directory.parent / "card"
        registry.set_version_tag(version, "model_card.sha256", log_card(card, card_dir))
        sign_version(registry, version, directory, card_dir)  # the files written here
    return run_id, version

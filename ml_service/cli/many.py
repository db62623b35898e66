"""Many-models commands: train a set (``mlops run`` sends a partitioned spec here) and
batch-score with one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from ml_service.cli.common import JsonOption, VersionOption, chosen_version, connected, guarded, \
    out, write_json

if TYPE_CHECKING:
    from ml_service.many.results import SetResult

app = typer.Typer()
PREDICTIONS = Path("predictions")

DatasetOption = Annotated[
    Optional[str],
    typer.Option("--data", help="Partitioned Parquet dataset: a path or fsspec URI "
                                "[default: MLOPS_DATA_PATH or the model's data_path]."),
]


def train_set(data: str | None, config: Path | None, json_out: Path | None) -> None:
    """Train, gate and register the set of a partitioned spec (see ``mlops run``)."""
    from ml_service.many.engines import engine_from_env
    from ml_service.many.pipeline import run_many
    from ml_service.training.config import load_config

    settings, spec, registry = connected()
    cfg = load_config(config or settings.config_file, spec)
    engine = engine_from_env()
    out.print(f"[cyan]▶[/] training one model per {' x '.join(spec.partition_keys)} on "
              f"{engine.name} ({engine.workers} workers)")

    def progress(done: int, total: int) -> None:
        out.print(f"  chunk {done}/{total}", highlight=False)

    result = run_many(data or str(settings.data_file), spec, cfg, settings, registry, engine,
                      progress)
    summary(result)
    write_json(json_out, result.as_json())


def summary(result: SetResult) -> None:
    table = Table(title=f"{result.partitions} partitions", title_justify="left")
    table.add_column("decision")
    table.add_column("partitions", justify="right")
    for decision, count in sorted(result.counts.items()):
        table.add_row(decision, str(count))
    out.print(table)
    if result.worst:
        out.print("worst partition: " + ", ".join(f"{k} {v:.4f}" for k, v in result.worst.items()))
    for line in result.validation[:10]:
        out.print(f"[yellow]validation[/] {line}")
    for line in result.problems[:10]:
        out.print(f"[yellow]![/] {line}")
    out.print(f"rule {result.rule}")
    colour = "green" if result.champion else "yellow" if result.registered else "dim"
    out.print(f"[bold {colour}]{result.reason}[/]")
    out.print(f"[dim]finished in {result.seconds:.1f}s on {result.engine}, "
              f"{result.chunks} chunks[/]")


@app.command("batch-score")
@guarded
def batch_score(
    data: DatasetOption = None,
    output: Annotated[Path, typer.Option("--out", help="Where the predictions go.")] = PREDICTIONS,
    version: VersionOption = None,
    json_out: JsonOption = None,
) -> None:
    """Score a partitioned dataset with a many-models set, each partition by its model."""
    import tempfile

    from ml_service.errors import UsageError
    from ml_service.many.engines import engine_from_env
    from ml_service.registry.signed import download_set
    from ml_service.many.scoring import score_many

    settings, spec, registry = connected()
    if not spec.partition_keys:
        raise UsageError(f"model '{spec.name}' has no partition_keys: batch-score is for "
                         "many-models sets (MLOPS_MODEL)")
    chosen = chosen_version(registry, version)
    engine = engine_from_env()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        models = download_set(registry, chosen, Path(tmp))
        models.close()
        result = score_many(data or str(settings.data_file), output, models.directory, chosen,
                            spec, engine)
    seconds = time.perf_counter() - started
    out.print(f"scored {result.rows} rows of {result.partitions} partitions with version "
              f"{chosen} on {engine.name} in {seconds:.1f}s "
              f"({result.rows / max(seconds, 1e-9):,.0f} rows/s); predictions in {output}")
    if result.unscored_rows:
        out.print(f"[yellow]{result.unscored_rows} rows not scored[/]: "
                  f"{len(result.missing)} partitions have no model"
                  + (f" (e.g. {', '.join(result.missing[:5])})" if result.missing else "")
                  + (f"; {'; '.join(result.invalid[:5])}" if result.invalid else ""))
    write_json(json_out, result.as_json())

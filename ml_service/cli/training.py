"""Training commands: data, validate, train, evaluate, run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from ml_service.cli.common import (
    ConfigOption,
    DataOption,
    JsonOption,
    Progress,
    connected,
    guarded,
    metrics_table,
    model,
    out,
    write_json,
)
from ml_service.errors import UsageError

if TYPE_CHECKING:
    from ml_service.training.results import PipelineResult

app = typer.Typer()
MODEL_OUT = Path("outputs/model.joblib")


@app.command()
@guarded
def data(
    output: Annotated[Optional[Path], typer.Option(
        "--out", help="Where to write it [default: the model's data_path].")] = None,
) -> None:
    """Write the model's example dataset (from its spec): CSV, or partitioned Parquet for sets."""
    settings, spec = model()
    if spec.reference_data is None:
        raise UsageError(f"model '{spec.name}' ships no example dataset: bring your own data "
                         "and set MLOPS_DATA_PATH")
    target = output or settings.data_file
    if spec.partition_keys:
        from ml_service.many.dataset import write_dataset

        shards = write_dataset(spec.reference_data(), target, spec.partition_keys)
        out.print(f"wrote {target} ({shards} shards by {spec.partition_keys[0]})")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    spec.reference_data().to_csv(target, index=False)
    out.print(f"wrote {target}")


@app.command()
@guarded
def validate(data: DataOption = None) -> None:
    """Check a dataset against the data contract's expectation suite (exit 3 if it fails)."""
    from ml_service.training.pipeline import validate_data
    from ml_service.training.steps import StepRunner

    settings, spec = model()
    path = data or settings.data_file
    _, report = validate_data(path, spec.contract, settings, StepRunner(settings.cache_dir))
    out.print(f"[green]✓[/] {path}: {report.summary()}")
    out.print(f"report: {settings.reports_dir / 'validation.json'}")


@app.command()
@guarded
def train(
    data: DataOption = None,
    config: ConfigOption = None,
    output: Annotated[
        Path, typer.Option("--out", help="Where to save the fitted model (joblib).")
    ] = MODEL_OUT,
) -> None:
    """Validate, split and train; save the model and show its holdout metrics.

    Nothing is logged to MLflow or registered: use `mlops run` for that.
    """
    import joblib

    from ml_service.training.config import load_config
    from ml_service.training.pipeline import build_candidate
    from ml_service.training.steps import StepRunner

    settings, spec = model()
    cfg = load_config(config or settings.config_file, spec)
    progress = Progress()
    candidate = build_candidate(data or settings.data_file, spec, cfg, settings,
                                StepRunner(settings.cache_dir, progress))
    progress.close()
    output.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(candidate.model, output)
    out.print(metrics_table("holdout metrics", {"candidate": candidate.metrics}))
    out.print(f"model saved to {output}")


@app.command()
@guarded
def evaluate(data: DataOption = None, config: ConfigOption = None,
             json_out: JsonOption = None) -> None:
    """Compare a fresh candidate with the champion on the same holdout; register nothing."""
    _pipeline(data, config, json_out, dry_run=True)


@app.command()
@guarded
def run(
    data: DataOption = None,
    config: ConfigOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Register even if the gate says no (tagged forced).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide, but log and register nothing (CI builds).")
    ] = False,
    json_out: JsonOption = None,
) -> None:
    """Run the whole pipeline: validate, split, train, evaluate, gate, register."""
    _pipeline(data, config, json_out, force=force, dry_run=dry_run)


def _pipeline(data: Path | None, config: Path | None, json_out: Path | None,
              force: bool = False, dry_run: bool = False) -> None:
    from ml_service.training.config import load_config
    from ml_service.training.pipeline import run_pipeline

    settings, spec, registry = connected()
    if spec.partition_keys:
        if dry_run or force:
            raise UsageError(f"model '{spec.name}' is a many-models set: --dry-run and --force "
                             "are not supported for sets yet")
        from ml_service.cli.many import train_set

        train_set(str(data) if data else None, config, json_out)
        return
    cfg = load_config(config or settings.config_file, spec)
    progress = Progress()
    result = run_pipeline(data or settings.data_file, spec, cfg, settings, registry,
                          force=force, on_step=progress, dry_run=dry_run)
    elapsed = progress.close()
    _summary(result, would=dry_run)
    out.print(f"[dim]finished in {elapsed:.1f}s; store: {settings.shown_tracking_uri}[/]")
    write_json(json_out, result.as_json())


def _summary(result: PipelineResult, would: bool = False) -> None:
    label = f"champion v{result.champion_version}" if result.champion_version else "champion"
    out.print(metrics_table("holdout metrics",
                            {"candidate": result.candidate, label: result.champion}))
    if result.slices:
        table = Table(title=f"{result.primary_metric} by slice", title_justify="left")
        for column in ("slice", "rows", "candidate", label, "change"):
            table.add_column(column, justify="left" if column == "slice" else "right")
        for row in result.slices:
            table.add_row(f"{row['slice']}={row['group']}", str(row["rows"]),
                          f"{row['candidate']:.4f}",
                          "—" if row["champion"] is None else f"{row['champion']:.4f}",
                          "—" if row["change"] is None else f"{row['change']:+.2%}")
        out.print(table)
    if result.cached_steps:
        out.print(f"[dim]reused from cache: {', '.join(result.cached_steps)}[/]")
    if would:
        verdict = "would register" if result.gate_passed else "would not register"
        out.print(f"[bold]{verdict}[/]: {result.reason}")
    elif result.registered:
        out.print(
            f"[bold green]registered[/] version {result.version} as champion"
            f"{' [yellow](forced)[/]' if result.forced else ''}: {result.reason}"
        )
    else:
        out.print(f"[bold yellow]not registered[/]: {result.reason}")
    if result.run_id:
        out.print(f"[dim]MLflow run {result.run_id}[/]")


@app.command()
@guarded
def check() -> None:
    """Check the model's spec: contract, factory, metrics, config, example (exit 2 if not)."""
    from ml_service.conformance import check_spec

    import functools

    from ml_service.training.data import load_data

    settings, spec = model()
    # A spec without an example dataset is fitted on the configured data file, if any.
    data = (functools.partial(load_data, settings.data_file)
            if spec.reference_data is None and not spec.partition_keys
            and settings.data_file.is_file() else None)
    passed = check_spec(spec, data=data)
    out.print(f"[green]✓[/] model spec '{spec.name}' ({spec.package}): "
              f"{len(passed)} checks passed ({', '.join(passed)})")

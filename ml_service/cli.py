"""The ``mlops`` command line: the only layer that prints.

Exit codes: 0 ran (registered or not), 2 usage error, 3 data validation failed,
1 anything else. Errors are one clear message; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ml_service.errors import MlopsError, UsageError

app = typer.Typer(
    help="Validate, train, evaluate and register the model; inspect the registry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# soft_wrap: long messages stay on one line in CI logs instead of wrapping at 80.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DataOption = Annotated[
    Optional[Path],
    typer.Option("--data", help="Dataset CSV [default: MLOPS_DATA_PATH or data/diabetes.csv]."),
]
ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", help="ML parameters YAML [default: the model package's config]."),
]
JsonOption = Annotated[
    Optional[Path], typer.Option("--json-out", help="Also write the result as JSON here.")
]


class State:
    """Options shared by every command."""

    verbose = False


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log details and show tracebacks.")
    ] = False,
) -> None:
    """MLOps pipeline for the model package in src/."""
    State.verbose = verbose
    # MLflow installs its own INFO handler on import unless told not to; the
    # CLI decides what is shown, through the root logger configured here.
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # MLflow and GX are chatty at INFO; their warnings still show.
    for noisy in ("mlflow", "great_expectations", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)
    # uv-made environments have no pip; MLflow warns about that on every model it logs.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)


def _settings():
    from pydantic import ValidationError

    from ml_service.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        raise UsageError(f"invalid MLOPS_* setting: {exc.errors()[0]['msg']}") from None


def _guard(func):
    """Run ``func``; turn known errors into a message and their exit code."""
    try:
        return func()
    except MlopsError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
        if State.verbose:
            err.print_exception()
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - the one place bugs become a message
        err.print(
            f"[bold red]error:[/] unexpected {type(exc).__name__}: {exc}\n"
            "run again with --verbose for the traceback",
            highlight=False,
        )
        if State.verbose:
            err.print_exception()
        raise typer.Exit(1) from None


class Progress:
    """Prints one line per pipeline step, marking the ones served from the cache."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.last: tuple[str, float] | None = None

    def __call__(self, name: str, cached: bool) -> None:
        self._finish()
        out.print(f"[cyan]▶[/] {name}{' [dim](cached)[/]' if cached else ''} …", end="")
        self.last = (name, time.perf_counter())

    def _finish(self) -> None:
        if self.last:
            out.print(f" done in {time.perf_counter() - self.last[1]:.1f}s")
            self.last = None

    def close(self) -> float:
        self._finish()
        return time.perf_counter() - self.started


def _write_json(path: Path | None, payload: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def _metrics_table(title: str, rows: dict[str, dict[str, float] | None]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for name in rows:
        table.add_column(name, justify="right")
    metric_names = next(v for v in rows.values() if v).keys()
    for metric in metric_names:
        table.add_row(
            metric, *[f"{v[metric]:.4f}" if v else "—" for v in rows.values()]
        )
    return table


def _prepare(data: Path | None, config_path: Path | None):
    from ml_service.config import load_config

    settings = _settings()
    data = data or settings.data_path
    config = load_config(config_path or settings.config_path)
    return settings, data, config


@app.command()
def validate(data: DataOption = None) -> None:
    """Check a dataset against the data contract's expectation suite (exit 3 if it fails)."""

    def body():
        from ml_service.pipeline import StepRunner, validate_data

        settings = _settings()
        path = data or settings.data_path
        _, report = validate_data(path, settings, StepRunner(settings.cache_dir))
        out.print(f"[green]✓[/] {path}: {report.summary()}")
        out.print(f"report: {settings.reports_dir / 'validation.json'}")

    _guard(body)


@app.command()
def train(
    data: DataOption = None,
    config: ConfigOption = None,
    output: Annotated[
        Path, typer.Option("--out", help="Where to save the fitted model (joblib).")
    ] = Path("outputs/model.joblib"),
) -> None:
    """Validate, split and train; save the model and show its holdout metrics.

    Nothing is logged to MLflow or registered: use `mlops run` for that.
    """

    def body():
        import joblib

        from ml_service.pipeline import StepRunner, build_candidate

        settings, path, cfg = _prepare(data, config)
        progress = Progress()
        candidate = build_candidate(path, cfg, settings, StepRunner(settings.cache_dir, progress))
        progress.close()
        output.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(candidate.model, output)
        out.print(_metrics_table("holdout metrics", {"candidate": candidate.metrics}))
        out.print(f"model saved to {output}")

    _guard(body)


@app.command()
def evaluate(
    data: DataOption = None,
    config: ConfigOption = None,
    json_out: JsonOption = None,
) -> None:
    """Compare a fresh candidate with the champion on the same holdout; register nothing."""
    _guard(lambda: _pipeline(data, config, json_out, dry_run=True))


@app.command()
def run(
    data: DataOption = None,
    config: ConfigOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Register even if the gate says no (tagged forced).")
    ] = False,
    json_out: JsonOption = None,
) -> None:
    """Run the whole pipeline: validate, split, train, evaluate, gate, register."""
    _guard(lambda: _pipeline(data, config, json_out, force=force))


def _pipeline(data, config, json_out, force: bool = False, dry_run: bool = False) -> None:
    from ml_service.pipeline import run_pipeline
    from ml_service.registry import connect

    settings, path, cfg = _prepare(data, config)
    registry = connect(settings)
    progress = Progress()
    result = run_pipeline(
        path, cfg, settings, registry, force=force, on_step=progress, dry_run=dry_run
    )
    elapsed = progress.close()
    _summary(result, would=dry_run)
    out.print(f"[dim]finished in {elapsed:.1f}s; store: {settings.resolved_tracking_uri}[/]")
    _write_json(json_out, result.as_json())


def _summary(result, would: bool = False) -> None:
    label = f"champion v{result.champion_version}" if result.champion_version else "champion"
    out.print(_metrics_table("holdout metrics", {"candidate": result.candidate, label: result.champion}))
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
def status(json_out: JsonOption = None) -> None:
    """Show registered versions, their aliases and holdout metrics."""

    def body():
        from ml_service.registry import connect

        settings = _settings()
        registry = connect(settings)
        versions = registry.versions()
        _write_json(
            json_out,
            {
                "model": registry.name,
                "tracking_uri": settings.resolved_tracking_uri,
                "versions": [v.__dict__ for v in versions],
            },
        )
        if not versions:
            out.print(f"no versions of '{registry.name}' registered yet: run `make pipeline`")
            return
        table = Table(title=f"{registry.name} @ {settings.resolved_tracking_uri}", title_justify="left")
        for column in ("version", "aliases", "rmse", "r2", "created", "commit", "forced"):
            table.add_column(column, justify="right" if column in ("rmse", "r2") else "left")
        for v in versions:
            created = datetime.fromtimestamp(v.created / 1000, tz=timezone.utc)
            table.add_row(
                str(v.version),
                ", ".join(v.aliases),
                f"{v.metrics['rmse']:.3f}" if "rmse" in v.metrics else "",
                f"{v.metrics['r2']:.3f}" if "r2" in v.metrics else "",
                created.strftime("%Y-%m-%d %H:%M"),
                v.tags.get("git_commit", "")[:8],
                v.tags.get("forced", ""),
            )
        out.print(table)

    _guard(body)


if __name__ == "__main__":  # pragma: no cover
    app()

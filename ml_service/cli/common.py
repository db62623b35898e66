"""What every command shares: consoles, the error decorator, options, loading the model."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ml_service.errors import MlopsError, UsageError

if TYPE_CHECKING:
    from ml_service.registry import Registry
    from ml_service.settings import Settings
    from ml_service.spec import ModelSpec

# soft_wrap: long messages stay on one line in CI logs instead of wrapping at 80.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

DataOption = Annotated[
    Optional[Path],
    typer.Option("--data", help="Dataset CSV [default: MLOPS_DATA_PATH or the model's data_path]."),
]
ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", help="ML parameters YAML [default: the model package's config]."),
]
JsonOption = Annotated[
    Optional[Path], typer.Option("--json-out", help="Also write the result as JSON here.")
]
VersionOption = Annotated[
    Optional[int], typer.Option("--version", help="Model version [default: the champion].")
]


class State:
    """Options shared by every command."""

    verbose = False


def configure(verbose: bool) -> None:
    """Set up logging and MLflow's environment for one CLI process."""
    State.verbose = verbose
    # MLflow installs its own INFO handler on import unless told not to; the
    # CLI decides what is shown, through the root logger configured here.
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    # Nothing this process (or what it starts) does may unpickle a registry
    # model: models are loaded with skops (ml_service.bundle.load_skops).
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
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


def guarded(func: F) -> F:
    """Run a command; turn known errors into one message and their exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MlopsError as exc:
            # The message is text, not markup: a path like "a[/]b" must print as it is.
            err.print(f"[bold red]error:[/] {escape(_redacted(exc))}", highlight=False,
                      markup=True)
            if State.verbose:
                err.print_exception()
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - the one place bugs become a message
            err.print(
                f"[bold red]error:[/] unexpected {type(exc).__name__}: "
                f"{escape(_redacted(exc))}\n"
                "run again with --verbose for the traceback",
                highlight=False,
            )
            if State.verbose:
                err.print_exception()
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _redacted(exc: BaseException) -> str:
    """An error's text without credentials: any URI's, and the configured secrets."""
    from urllib.parse import urlsplit

    from ml_service.redact import redact_text

    secrets = [os.environ.get(name) for name in ("MLFLOW_TRACKING_PASSWORD",
                                                 "MLFLOW_TRACKING_TOKEN")]
    uri = os.environ.get("MLFLOW_TRACKING_URI") or ""
    try:
        secrets.append(urlsplit(uri).password)
    except ValueError:
        pass
    return redact_text(str(exc), *secrets)


def settings() -> Settings:
    """The runtime settings from the environment, as a usage error if invalid."""
    from pydantic import ValidationError

    from ml_service.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        raise UsageError(f"invalid MLOPS_* setting: {exc.errors()[0]['msg']}") from None


def model() -> tuple[Settings, ModelSpec]:
    """Settings resolved for the model chosen by MLOPS_MODEL, and its spec."""
    from ml_service.spec import load_spec

    base = settings()
    spec = load_spec(base.model)
    return base.for_model(spec), spec


def connected() -> tuple[Settings, ModelSpec, Registry]:
    """Settings, spec and a registry connection that has answered."""
    from ml_service.registry import connect

    resolved, spec = model()
    return resolved, spec, connect(resolved, spec.trusted_types)


def chosen_version(registry: Registry, version: int | None, alias: str = "champion") -> int:
    """``version``, or the one ``alias`` points to."""
    chosen = version or registry.alias_version(alias)
    if chosen is None:
        raise UsageError(f"no version has alias '{alias}' yet: run `make pipeline` first")
    return chosen


def write_json(path: Path | None, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` (if given) as indented JSON."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def append(path: Path | None, text: str) -> None:
    """Append ``text`` to ``path`` (a job summary or step-output file), if given."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            handle.write(text)


def metrics_table(title: str, rows: dict[str, dict[str, float] | None]) -> Table:
    """Metrics by name (rows) for each model (columns)."""
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for name in rows:
        table.add_column(name, justify="right")
    metric_names = next(v for v in rows.values() if v).keys()
    for metric in metric_names:
        table.add_row(metric, *[f"{v[metric]:.4f}" if v else "—" for v in rows.values()])
    return table


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
        """End the last step's line; return the seconds since the start."""
        self._finish()
        return time.perf_counter() - self.started

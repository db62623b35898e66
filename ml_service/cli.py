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
from rich.markup import escape
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
        # The message is text, not markup: a path like "a[/]b" must print as it is.
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True)
        if State.verbose:
            err.print_exception()
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - the one place bugs become a message
        err.print(
            f"[bold red]error:[/] unexpected {type(exc).__name__}: {escape(str(exc))}\n"
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


def _connected():
    """Settings and a registry connection that has answered."""
    from ml_service.registry import connect

    settings = _settings()
    return settings, connect(settings)


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
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide, but log and register nothing (CI builds).")
    ] = False,
    json_out: JsonOption = None,
) -> None:
    """Run the whole pipeline: validate, split, train, evaluate, gate, register."""
    _guard(lambda: _pipeline(data, config, json_out, force=force, dry_run=dry_run))


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
        settings, registry = _connected()
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
        _print_deployments(settings)

    _guard(body)


def _print_deployments(settings) -> None:
    from ml_service.release import deployments, docker_client

    try:
        running = deployments(settings, docker_client())
    except MlopsError as exc:
        out.print(f"[dim]deployments: unknown ({exc})[/]")
        return
    if not running:
        out.print("[dim]deployments: no QA or production container[/]")
        return
    table = Table(title="deployments", title_justify="left")
    for column in ("stage", "version", "container", "status", "health", "image"):
        table.add_column(column)
    for d in running:
        table.add_row(d["stage"], d["version"], d["container"], d["status"], d["health"], d["image"])
    out.print(table)


VersionOption = Annotated[
    Optional[int],
    typer.Option("--version", help="Model version [default: the champion]."),
]


def _version(registry, version: int | None, alias: str = "champion") -> int:
    chosen = version or registry.alias_version(alias)
    if chosen is None:
        raise UsageError(f"no version has alias '{alias}' yet: run `make pipeline` first")
    return chosen


@app.command()
def bundle(
    version: VersionOption = None,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", help="Bundle directory [default: MLOPS_BUNDLE_DIR].")
    ] = None,
) -> None:
    """Export a registered version as a scoring bundle (model file + metadata.json)."""

    def body():
        from ml_service.bundle import export_bundle
        settings, registry = _connected()
        chosen = _version(registry, version)
        target = out_dir or settings.bundle_dir
        metadata = export_bundle(registry, chosen, target)
        out.print(f"exported {metadata.name} v{metadata.version} to {target} (sha256 {metadata.sha256[:12]}…)")

    _guard(body)


@app.command()
def serve(
    version: VersionOption = None,
    host: Annotated[Optional[str], typer.Option(help="Bind address [default: MLOPS_SERVE_HOST].")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port [default: MLOPS_SERVE_PORT].")] = None,
) -> None:
    """Serve a registered version locally with uvicorn (no Docker)."""

    def body():
        from ml_service import http_server
        from ml_service.bundle import export_bundle
        from ml_service.serving import create_app

        settings, registry = _connected()
        chosen = _version(registry, version)
        export_bundle(registry, chosen, settings.bundle_dir)
        app_ = create_app(settings)
        bind_host, bind_port = host or settings.serve_host, port or settings.serve_port
        out.print(f"serving {registry.name} v{chosen} on http://{bind_host}:{bind_port} (docs at /docs)")
        http_server.run(app_, bind_host, bind_port, request_timeout=settings.request_timeout,
                        keep_alive=settings.keep_alive_timeout)

    _guard(body)


@app.command()
def image(version: VersionOption = None) -> None:
    """Build the scoring image for a version (hermetic: wheels gathered first)."""

    def body():
        from ml_service.release import build_image

        settings, registry = _connected()
        chosen = _version(registry, version)
        started = time.perf_counter()
        image_id, tag = build_image(settings, registry, chosen)
        out.print(f"built {tag} ({image_id[:19]}) in {time.perf_counter() - started:.1f}s")

    _guard(body)


@app.command()
def release(
    version: VersionOption = None,
    rebuild: Annotated[bool, typer.Option(help="Build even if the version has an image.")] = False,
) -> None:
    """Build the image (if needed), run it as QA, smoke-test it, set alias 'qa'."""

    def body():
        from ml_service.release import build_image, deploy_qa, docker_client

        settings, registry = _connected()
        client = docker_client()
        chosen = _version(registry, version)
        image_id = registry.get_version(chosen).tags.get("image.id")
        if rebuild or not image_id or not _image_exists(client, image_id):
            image_id, _ = build_image(settings, registry, chosen, client)
        deployment = deploy_qa(settings, registry, chosen, image_id, client)
        out.print(
            f"[green]QA passed[/]: version {chosen} serves at {deployment.url} "
            f"({deployment.container}, image {image_id[:19]}); alias 'qa' set"
        )

    _guard(body)


def _image_exists(client, image_id: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(image_id)
        return True
    except ImageNotFound:
        return False


@app.command()
def push(version: VersionOption = None) -> None:
    """Push a version's image to MLOPS_IMAGE_REGISTRY (tags v<version> and the commit)."""

    def body():
        from ml_service.release import push_image

        settings, registry = _connected()
        chosen = _version(registry, version, alias="qa") if version is None else version
        ref = push_image(settings, registry, chosen)
        out.print(f"pushed version {chosen}: {ref}")

    _guard(body)


@app.command("remote-engine")
def remote_engine() -> None:
    """Install the SSH key and known host of an ssh:// DOCKER_HOST, then check the engine.

    Reads DOCKER_SSH_KEY and DOCKER_SSH_KNOWN_HOSTS (secrets in Actions). Does
    nothing when DOCKER_HOST is unset or not ssh://.
    """

    def body():
        from ml_service.release import docker_client
        from ml_service.remote_engine import install_identity, ssh_target

        settings = _settings()
        key = settings.docker_ssh_key.get_secret_value() if settings.docker_ssh_key else None
        out.print(install_identity(settings.docker_host, key, settings.docker_ssh_known_hosts,
                                   Path.home() / ".ssh"), markup=False)
        if ssh_target(settings.docker_host) is not None:
            version = docker_client().version().get("Version", "?")
            out.print(f"Docker engine {version} answers at {settings.docker_host}; its "
                      f"containers are smoke-tested at {settings.engine_host}", markup=False)

    _guard(body)


@app.command()
def promote(version: VersionOption = None) -> None:
    """Run the image that passed QA in production; roll back if its smoke test fails."""

    def body():
        from ml_service import release as rel

        settings, registry = _connected()
        deployment = rel.promote(settings, registry, version)
        out.print(
            f"[green]promoted[/] version {deployment.version} to production at {deployment.url} "
            f"(image {deployment.image_id[:19]}); alias 'production' set"
        )

    _guard(body)


@app.command()
def rollback() -> None:
    """Return production to the previously promoted version."""

    def body():
        from ml_service import release as rel

        settings, registry = _connected()
        deployment = rel.rollback(settings, registry)
        out.print(f"[green]rolled back[/]: production serves version {deployment.version} again")

    _guard(body)


@app.command()
def bench(
    version: VersionOption = None,
    requests: Annotated[int, typer.Option(help="Single-row requests per server.")] = 3000,
    concurrency: Annotated[int, typer.Option(help="Concurrent clients.")] = 8,
) -> None:
    """Load-test the scoring service against `mlflow models serve` on the same model."""

    def body():
        from ml_service.bench import render, run_bench
        settings, registry = _connected()
        chosen = _version(registry, version)
        report = run_bench(settings, registry, chosen, requests, concurrency,
                           settings.reports_dir)
        out.print(render(report), markup=False)
        out.print(f"[dim]written to {settings.reports_dir / 'bench.md'} and bench.json[/]")

    _guard(body)


@app.command()
def summary(
    json_in: Annotated[Path, typer.Option("--json-in", help="Result of `mlops run --json-out`.")]
    = Path("reports/pipeline.json"),
    markdown: Annotated[
        Optional[Path], typer.Option(help="Append the Markdown summary here (e.g. $GITHUB_STEP_SUMMARY).")
    ] = None,
    outputs: Annotated[
        Optional[Path], typer.Option(help="Append registered=/version= lines here ($GITHUB_OUTPUT).")
    ] = None,
) -> None:
    """Render a pipeline result as Markdown and as step outputs for GitHub Actions."""

    def body():
        from ml_service.github import read_result, step_outputs, summary_markdown

        result = read_result(json_in)
        text = summary_markdown(result)
        _append(markdown, text)
        _append(outputs, step_outputs(result))
        out.print(text, markup=False, highlight=False)

    _guard(body)


@app.command("store-restore")
def store_restore() -> None:
    """Restore the embedded store from the newest `mlflow-store` workflow artifact.

    For GitHub Actions without an MLflow server: the registry survives from one
    run to the next. Does nothing when MLFLOW_TRACKING_URI is set.
    """

    def body():
        from ml_service.github import github_env, restore_store

        settings = _settings()
        if not settings.embedded:
            out.print(f"using the tracking server {settings.resolved_tracking_uri}; nothing to restore")
            return
        out.print(restore_store(settings.store_dir, *github_env()))

    _guard(body)


LogsOption = Annotated[
    Optional[str],
    typer.Option("--logs", help="Scoring log directory or fsspec URI (az://container/prefix) "
                 "[default: MLOPS_SCORING_LOG_URI, else MLOPS_SCORING_LOG_DIR]."),
]


def _append(path: Path | None, text: str) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            handle.write(text)


def _logs_location(settings, logs: str | None) -> str | None:
    """Where to read the scoring log: --logs, the shipping URI, or the local directory."""
    location = logs or settings.scoring_log_uri or settings.scoring_log_dir
    return None if location is None else str(location)


def _read_logs(location: str | None):
    from ml_service.scoring_log import read_logs

    if location is None:
        raise UsageError("no scoring logs given: pass --logs DIR|URI, or set "
                         "MLOPS_SCORING_LOG_URI (object storage) or MLOPS_SCORING_LOG_DIR")
    try:
        return read_logs(location)
    except FileNotFoundError:
        what = "directory" if "://" not in location else "bucket or container"
        raise UsageError(f"scoring log {what} not found: {location}") from None
    except Exception as exc:  # noqa: BLE001 - whatever the storage library raises
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise MlopsError(f"cannot read the scoring log at {location}: "
                         f"{type(exc).__name__}: {first}") from None


@app.command()
def drift(
    logs: LogsOption = None,
    config: ConfigOption = None,
    version: VersionOption = None,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", help="Report directory [default: reports/drift].")
    ] = None,
    markdown: Annotated[
        Optional[Path], typer.Option(help="Also append the summary here ($GITHUB_STEP_SUMMARY).")
    ] = None,
    outputs: Annotated[
        Optional[Path], typer.Option(help="Append drifted=true|false here ($GITHUB_OUTPUT).")
    ] = None,
    fail: Annotated[
        bool, typer.Option("--fail/--no-fail", help="Exit 4 when drift is found.")
    ] = True,
    missing_ok: Annotated[
        bool, typer.Option("--missing-ok", help="No scoring-log location configured is a "
                           "notice, not an error (scheduled monitoring before logs exist).")
    ] = False,
) -> None:
    """Compare logged requests and predictions with the training data (exit 4 on drift)."""

    def body():
        import pandas as pd

        from diabetes_regression.schema import CONTRACT
        from ml_service import drift as dr
        from ml_service.config import load_config
        from ml_service.errors import DriftDetected
        from ml_service.github import notice

        settings = _settings()
        rules = load_config(config or settings.config_path).monitoring
        location = _logs_location(settings, logs)
        if location is None and missing_ok:
            text = ("no scoring-log location is configured (MLOPS_SCORING_LOG_URI; in Actions "
                    "the repository variable SCORING_LOG_URI): nothing to check for drift")
            out.print(notice(text), markup=False, highlight=False)
            _append(markdown, f"### Drift\n\n{text}\n")
            _append(outputs, "drifted=false\n")
            return
        logged = _read_logs(location)
        if len(logged) < rules.min_rows:
            out.print(f"only {len(logged)} logged rows (< monitoring.min_rows = "
                      f"{rules.min_rows}): not enough to judge drift")
            _append(outputs, "drifted=false\n")
            return
        served = version or int(logged["model_version"].mode().iloc[0])
        registry = _connected()[1]
        reference_frame = pd.read_csv(settings.data_path)
        features = reference_frame[CONTRACT.feature_names]
        reference = {name: features[name].to_numpy() for name in CONTRACT.feature_names}
        reference["prediction"] = registry.load_model(served).predict(features)
        current = {name: logged[name].to_numpy() for name in [*CONTRACT.feature_names,
                                                              "prediction"]}
        report = dr.compare(reference, current, rules)
        title = f"Drift of {registry.name} v{served}"
        target = out_dir or settings.reports_dir / "drift"
        target.mkdir(parents=True, exist_ok=True)
        text = dr.markdown(report, title)
        (target / "drift.md").write_text(text)
        (target / "drift.html").write_text(dr.html_report(report, reference, current, title))
        (target / "drift.json").write_text(json.dumps(report.as_json(), indent=2) + "\n")
        _append(markdown, text)
        _append(outputs, f"drifted={'true' if report.drifted else 'false'}\n")
        out.print(text, markup=False, highlight=False)
        out.print(f"report: {target / 'drift.html'}")
        if report.drifted and fail:
            raise DriftDetected(f"drift above threshold in {', '.join(report.drifted)}")

    _guard(body)


@app.command()
def collect(
    outcomes: Annotated[Path, typer.Option(
        "--outcomes", help="CSV of ground truth: request_id, row (optional), target.")],
    output: Annotated[Path, typer.Option("--out", help="Where to write the new dataset CSV.")],
    logs: LogsOption = None,
    base: Annotated[Optional[Path], typer.Option(
        "--base", help="Existing dataset to extend (e.g. data/diabetes.csv).")] = None,
) -> None:
    """Join scoring logs with ground-truth outcomes into a dataset that passes the contract."""

    def body():
        import pandas as pd

        from diabetes_regression.schema import CONTRACT
        from ml_service.errors import DataValidationError
        from ml_service.validation import validate_frame

        settings = _settings()
        logged = _read_logs(_logs_location(settings, logs))
        try:
            truth = pd.read_csv(outcomes)
        except FileNotFoundError:
            raise UsageError(f"outcomes file not found: {outcomes}") from None
        target = CONTRACT.target.name
        missing = {"request_id", target} - set(truth.columns)
        if missing:
            raise UsageError(f"{outcomes} lacks column(s) {sorted(missing)}")
        if logged.empty:
            raise UsageError("the scoring log is empty")
        # A client-chosen X-Request-ID need not be unique: a row logged twice
        # under one id could pair one client's outcome with another's inputs.
        logged = logged.astype({"request_id": str})
        ambiguous = logged.duplicated(["request_id", "row"], keep=False)
        logged = logged[~ambiguous]
        keys = ["request_id", "row"]
        if "row" not in truth.columns:
            multi = logged.groupby("request_id").size()
            if (multi > 1).any():
                raise UsageError(
                    f"{outcomes} has no 'row' column but request {multi.idxmax()} scored "
                    f"{multi.max()} rows: add the row index to the outcomes"
                )
            keys = ["request_id"]
        truth = truth.astype({"request_id": str})
        merged = logged.merge(truth[[*keys, target]], on=keys, how="inner")
        dataset = merged[CONTRACT.columns]
        if base is not None:
            dataset = pd.concat([pd.read_csv(base)[CONTRACT.columns], dataset],
                                ignore_index=True)
        report = validate_frame(dataset, CONTRACT)
        if not report.success:
            raise DataValidationError(
                f"the collected dataset breaks the data contract\n{report.summary()}",
                report=report,
            )
        output.parent.mkdir(parents=True, exist_ok=True)
        dataset.to_csv(output, index=False)
        out.print(
            f"{len(merged)} of {len(logged)} logged rows matched an outcome "
            f"({len(truth) - len(merged)} outcomes unmatched); wrote {len(dataset)} rows "
            f"to {output}; it passes the data contract ({report.evaluated} expectations)"
        )
        if ambiguous.any():
            out.print(f"[yellow]skipped {int(ambiguous.sum())} logged rows[/] whose request id "
                      "more than one request used: their outcomes cannot be told apart "
                      "(send unique X-Request-ID values)")

    _guard(body)


if __name__ == "__main__":  # pragma: no cover
    app()

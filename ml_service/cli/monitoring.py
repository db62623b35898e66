"""Monitoring commands: drift, collect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ml_service.cli.common import (
    ConfigOption,
    VersionOption,
    append,
    connected,
    guarded,
    model,
    out,
)

app = typer.Typer()

LogsOption = Annotated[
    Optional[str],
    typer.Option("--logs", help="Scoring log directory or fsspec URI (az://container/prefix) "
                 "[default: MLOPS_SCORING_LOG_URI, else MLOPS_SCORING_LOG_DIR]."),
]
KeysOption = Annotated[
    Optional[list[str]],
    typer.Option("--api-key", help="Only rows sent with this API key id (the log's api_key; "
                 "repeat for several) [default: all rows]."),
]


@app.command()
@guarded
def drift(
    logs: LogsOption = None,
    stage: Annotated[Optional[str], typer.Option(
        "--stage", help="qa or production: the stage's scoring log (its Docker volume; on "
        "Kubernetes, where it is shipped: MLOPS_SCORING_LOG_URI).")] = None,
    api_key: KeysOption = None,
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
    import tempfile

    from ml_service.errors import DriftDetected
    from ml_service.github import notice
    from ml_service.monitoring.logs import stage_logs
    from ml_service.monitoring import drift as dr
    from ml_service.monitoring.logs import from_keys, logs_location, read_scoring_log
    from ml_service.training.config import load_config
    from ml_service.training.data import load_data

    settings, spec = model()
    rules = load_config(config or settings.config_file, spec).monitoring
    scratch = tempfile.TemporaryDirectory()
    location = (stage_logs(settings, stage, logs, Path(scratch.name)) if stage
                else logs_location(settings, logs))
    if location is None and missing_ok:
        text = ("no scoring-log location is configured (MLOPS_SCORING_LOG_URI; in Actions "
                "the repository variable SCORING_LOG_URI): nothing to check for drift")
        out.print(notice(text), markup=False, highlight=False)
        append(markdown, f"### Drift\n\n{text}\n")
        append(outputs, "drifted=false\n")
        return
    logged = from_keys(read_scoring_log(location), api_key or [])
    if len(logged) < rules.min_rows:
        out.print(f"only {len(logged)} logged rows (< monitoring.min_rows = "
                  f"{rules.min_rows}): not enough to judge drift")
        append(outputs, "drifted=false\n")
        return
    served = version or int(logged["model_version"].mode().iloc[0])
    _, _, registry = connected()
    title = f"Drift of {registry.name} v{served}"
    if spec.partition_keys:
        import tempfile

        from ml_service.many.monitoring import set_columns
        from ml_service.registry.signed import download_set

        with tempfile.TemporaryDirectory() as tmp:
            models = download_set(registry, served, Path(tmp))
            try:
                reference, current, partitions = set_columns(
                    spec, models, str(settings.data_file), logged)
            finally:
                models.close()
        title += f" over the {partitions} partitions in the log"
    else:
        reference, current = dr.columns(spec, registry.load_model(served),
                                        load_data(settings.data_file), logged)
    report = dr.compare(reference, current, rules)
    target = out_dir or settings.reports_dir / "drift"
    target.mkdir(parents=True, exist_ok=True)
    text = dr.markdown(report, title)
    (target / "drift.md").write_text(text)
    (target / "drift.html").write_text(dr.html_report(report, reference, current, title))
    (target / "drift.json").write_text(json.dumps(report.as_json(), indent=2) + "\n")
    append(markdown, text)
    append(outputs, f"drifted={'true' if report.drifted else 'false'}\n")
    out.print(text, markup=False, highlight=False)
    out.print(f"report: {target / 'drift.html'}")
    if report.drifted and fail:
        raise DriftDetected(f"drift above threshold in {', '.join(report.drifted)}")


@app.command()
@guarded
def collect(
    outcomes: Annotated[Path, typer.Option(
        "--outcomes", help="CSV of ground truth: request_id, row (optional), and the target "
        "named as in the data contract (or --target-column).")],
    output: Annotated[Path, typer.Option(
        "--out", help="Where to write the new dataset: a CSV file, or for a many-models set "
        "a partitioned Parquet directory (replaced when complete).")],
    logs: LogsOption = None,
    api_key: KeysOption = None,
    target_column: Annotated[Optional[str], typer.Option(
        "--target-column", help="The outcomes' column holding the target [default: the "
        "contract's target name].")] = None,
    base: Annotated[Optional[Path], typer.Option(
        "--base", help="Existing dataset to extend (e.g. the current training data; a "
        "partitioned directory for a set).")] = None,
) -> None:
    """Join scoring logs with ground-truth outcomes into a dataset that passes the contract."""
    from ml_service.monitoring.collect import collect as join, read_outcomes
    from ml_service.monitoring.logs import from_keys, logs_location, read_scoring_log
    from ml_service.training.data import load_data

    settings, spec = model()
    keys = spec.partition_keys
    everything = read_scoring_log(logs_location(settings, logs))
    logged = from_keys(everything, api_key or [])
    truth = read_outcomes(outcomes, spec.contract, target_column)
    if keys:
        from ml_service.many.dataset import partition_keys_of, read_dataset, write_dataset

        existing = read_dataset(str(base), keys) if base is not None else None
        result = join(logged, truth, spec.contract, existing, str(outcomes), keys)
        shards = write_dataset(result.dataset, output, keys)
        partitions = partition_keys_of(result.dataset, keys).nunique()
        where = f"{output} ({partitions} partitions in {shards} {keys[0]} directories)"
    else:
        result = join(logged, truth, spec.contract,
                      load_data(base) if base is not None else None, str(outcomes))
        output.parent.mkdir(parents=True, exist_ok=True)
        result.dataset.to_csv(output, index=False)
        where = str(output)
    out.print(
        f"{result.matched} of {result.logged} logged rows matched an outcome "
        f"({result.unmatched_outcomes} outcomes unmatched); wrote {len(result.dataset)} rows "
        f"to {where}; it passes the data contract ({result.expectations} expectations)"
    )
    if len(logged) < len(everything):
        out.print(f"kept the {len(logged)} of {len(everything)} logged rows sent with API "
                  f"key(s) {', '.join(api_key or [])}")
    if result.skipped_ambiguous:
        out.print(f"[yellow]skipped {result.skipped_ambiguous} logged rows[/] whose request id "
                  "more than one request used: their outcomes cannot be told apart "
                  "(send unique X-Request-ID values)")

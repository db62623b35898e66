"""GitHub Actions commands: summary, store-restore."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ml_service.cli.common import append, guarded, out, settings as load_settings

app = typer.Typer()
PIPELINE_RESULT = Path("reports/pipeline.json")


@app.command()
@guarded
def summary(
    json_in: Annotated[Path, typer.Option(
        "--json-in", help="Result of `mlops run --json-out`.")] = PIPELINE_RESULT,
    markdown: Annotated[Optional[Path], typer.Option(
        help="Append the Markdown summary here (e.g. $GITHUB_STEP_SUMMARY).")] = None,
    outputs: Annotated[Optional[Path], typer.Option(
        help="Append registered=/version= lines here ($GITHUB_OUTPUT).")] = None,
) -> None:
    """Render a pipeline result as Markdown and as step outputs for GitHub Actions."""
    from ml_service.github import read_result, step_outputs, summary_markdown

    result = read_result(json_in)
    text = summary_markdown(result)
    append(markdown, text)
    append(outputs, step_outputs(result))
    out.print(text, markup=False, highlight=False)


@app.command("store-restore")
@guarded
def store_restore() -> None:
    """Restore the embedded store from the newest `mlflow-store` workflow artifact.

    For GitHub Actions without an MLflow server: the registry survives from one
    run to the next. Does nothing when MLFLOW_TRACKING_URI is set.
    """
    from ml_service.github import github_env, restore_store

    settings = load_settings()
    if not settings.embedded:
        out.print(f"using the tracking server {settings.shown_tracking_uri}; "
                  "nothing to restore")
        return
    out.print(restore_store(settings.store_dir, *github_env()))

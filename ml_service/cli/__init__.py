"""The ``mlops`` command line: thin Typer sub-apps, one per lifecycle stage.

Each command parses its options, calls a package and prints; this is the only
layer that prints. Exit codes: 0 ran (registered or not), 2 usage error, 3
data validation failed, 4 drift found, 1 anything else. Errors are one clear
message (:func:`ml_service.cli.common.guarded`); ``--verbose`` adds the traceback.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ml_service.cli import (
    actions,
    delivery,
    keys,
    many,
    monitoring,
    release,
    serving,
    shadow,
    signing,
    status,
    training,
)
from ml_service.cli.common import configure

app = typer.Typer(
    help="Validate, train, evaluate and register the model; release and monitor it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for part in (training, many, status, serving, release, shadow, keys, delivery, monitoring,
             actions, signing):
    app.add_typer(part.app)


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log details and show tracebacks.")
    ] = False,
) -> None:
    """MLOps pipeline for the model package chosen by MLOPS_MODEL (or the only one)."""
    configure(verbose)


__all__ = ["app"]

"""The /score API keys: make one, show or set a deployed stage's."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ml_service.cli.common import guarded, out, settings as load_settings
from ml_service.cli.release import _target

app = typer.Typer()


@app.command("api-keys")
@guarded
def api_keys(
    stage: Annotated[Optional[str], typer.Option(
        "--stage", help="qa or production: the stage whose /score keys to show or set.")] = None,
    new: Annotated[bool, typer.Option(
        "--new", help="Print a new random key (stdout) and its id (stderr); stores nothing.")
    ] = False,
    set_: Annotated[bool, typer.Option(
        "--set", help="Give the stage the keys of MLOPS_API_KEYS (or MLOPS_API_KEYS_FILE) "
        "now, without a deployment: its service reads them within seconds.")] = False,
    reveal: Annotated[bool, typer.Option(
        "--reveal", help="Print the stage's keys themselves (stdout), not only their ids.")
    ] = False,
) -> None:
    """Show, set or make the API keys of /score.

    A deployed stage keeps its keys with it (a Secret in its namespace, or a
    volume on its Docker engine). To rotate one: set MLOPS_API_KEYS to the
    new and the old key and run --set (or release), move the clients to the
    new key, then set it alone and run --set again.
    """
    import sys

    from ml_service.errors import UsageError
    from ml_service.release import stage_keys
    from ml_service.serving.auth import describe, key_id, new_key

    if new:
        made = new_key()
        print(made)
        print(f"key id {key_id(made)} (the scoring log records the id, never the key)",
              file=sys.stderr)
        return
    if stage not in ("qa", "production"):
        raise UsageError("--stage must be qa or production (or --new for a fresh key)")
    settings = load_settings()
    target: Any = _target(settings)
    if set_:
        keys = stage_keys.wanted(settings)
        if not keys:
            raise UsageError("--set gives the stage the keys of MLOPS_API_KEYS (or "
                             "MLOPS_API_KEYS_FILE), and neither is set; nothing was changed")
        target.write_keys(stage, keys)
        out.print(f"{stage} now accepts {describe(map(key_id, keys))} (its service re-reads "
                  "its key file within seconds; on Kubernetes the kubelet takes up to a "
                  "minute to update it)", markup=False)
        return
    keys = target.read_keys(stage)
    if reveal:
        for key in keys:
            print(key)
        return
    out.print(f"{stage} accepts {describe(map(key_id, keys))}" + (
        "" if keys else ": it has no keys yet (its next release sets them)"), markup=False)

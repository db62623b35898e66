"""Where the scoring log is read from: a local directory or object storage."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ml_service.errors import MlopsError, UsageError
from ml_service.settings import Settings


def logs_location(settings: Settings, given: str | None) -> str | None:
    """Where to read the scoring log: ``given``, the shipping URI, or the local directory."""
    location: str | Path | None = given or settings.scoring_log_uri or settings.scoring_log_dir
    return None if location is None else str(location)


def read_scoring_log(location: str | None) -> pd.DataFrame:
    """Every logged row at ``location``.

    Raises:
        UsageError: If no location is given or it does not exist.
        MlopsError: If the storage cannot be read.
    """
    from ml_service.serving.scoring_log import read_logs

    if location is None:
        raise UsageError("no scoring logs given: pass --logs DIR|URI, or set "
                         "MLOPS_SCORING_LOG_URI (object storage) or MLOPS_SCORING_LOG_DIR")
    try:
        frame: pd.DataFrame = read_logs(location)
        return frame
    except FileNotFoundError:
        what = "directory" if "://" not in location else "bucket or container"
        raise UsageError(f"scoring log {what} not found: {location}") from None
    except Exception as exc:  # noqa: BLE001 - whatever the storage library raises
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise MlopsError(f"cannot read the scoring log at {location}: "
                         f"{type(exc).__name__}: {first}") from None

"""Where the scoring log is read from: a local directory or object storage."""

from __future__ import annotations

import re
from collections.abc import Sequence
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


def from_keys(logged: pd.DataFrame, key_ids: Sequence[str]) -> pd.DataFrame:
    """Only the rows sent with the API keys of ``key_ids`` (all rows if none are named).

    The scoring log records each row's key id (``api_key``); rows sent by a
    client that is not trusted to be real traffic are left out this way.

    Raises:
        UsageError: If ids are named but the log records no key ids, or none
            of its rows came from them (with the ids it does hold).
    """
    if not key_ids:
        return logged
    if not all(re.fullmatch(r"[0-9a-f]{12}", k) for k in key_ids):
        # Not echoed: a key pasted by mistake must not reach a terminal or a CI log.
        raise UsageError("--api-key takes key ids (12 lowercase hex digits, as the scoring "
                         "log's api_key column and `mlops api-keys` show them), not keys; a "
                         "value given is not an id (not shown)")
    if "api_key" not in logged.columns or logged["api_key"].isna().all():
        raise UsageError("the scoring log records no API key ids (written by a service "
                         "without keys, or before keys existed): --api-key cannot select rows")
    kept = logged[logged["api_key"].isin(list(key_ids))]
    if kept.empty:
        found = sorted(str(k) for k in logged["api_key"].dropna().unique())
        raise UsageError(f"no logged row was sent with API key id(s) {', '.join(key_ids)}; "
                         f"the log holds rows of {', '.join(found[:10])}")
    return kept


def stage_logs(settings: Settings, stage: str, given: str | None, scratch: Path) -> str:
    """Where a deployed stage's scoring log can be read (``drift --stage``).

    On Docker: a copy of the stage container's log volume, made in ``scratch``.
    On Kubernetes the pods' logs are shipped: ``MLOPS_SCORING_LOG_URI``.

    Raises:
        UsageError: For an unknown stage, with ``--logs`` too, or on Kubernetes
            without a shipping URI.
    """
    if stage not in ("qa", "production"):
        raise UsageError(f"--stage must be qa or production, not {stage!r}")
    if given:
        raise UsageError("--stage and --logs both say where the log is: give one")
    if settings.deploy_target == "kubernetes":
        if not settings.scoring_log_uri:
            raise UsageError(f"on Kubernetes the {stage} pods' scoring log is read where they "
                             "ship it: set MLOPS_SCORING_LOG_URI (and in the overlay) to that "
                             "storage")
        return settings.scoring_log_uri
    from ml_service.release.docker_target import DockerTarget

    return str(DockerTarget(settings).copy_scoring_log(stage, scratch))

"""Reading, splitting and fingerprinting a dataset described by a data contract.

Pure functions on DataFrames, apart from :func:`load_data`, the one place that
reads a file.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ml_service.contract import DataContract
from ml_service.errors import DataValidationError, UsageError

if TYPE_CHECKING:
    from ml_service.settings import Settings
    from ml_service.spec import ModelSpec

logger = logging.getLogger(__name__)


def load_data(path: Path) -> pd.DataFrame:
    """Read a dataset CSV without coercing types, so validation sees them as they are.

    Raises:
        UsageError: If ``path`` is missing or a directory.
        DataValidationError: If it is not a readable CSV file.
    """
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise UsageError(f"data file not found: {path} (`mlops data` writes the "
                         "model's example dataset)") from None
    except IsADirectoryError:
        raise UsageError(f"data path is a directory, not a CSV file: {path}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"{path} is not a readable CSV file: {exc}") from None


def _canonical_rows(features: pd.DataFrame) -> list[bytes]:
    # repr of a float is the shortest exact round-trip form, so 59 and 59.0
    # (int or float columns) give the same bytes on every platform.
    values = features.to_numpy(dtype=float)
    return [",".join(repr(float(v)) for v in row).encode() for row in values]


def holdout_mask(frame: pd.DataFrame, holdout_fraction: float,
                 contract: DataContract) -> np.ndarray:
    """Assign each row to the holdout by a hash of its feature values.

    The assignment depends only on the row's own content, so a row stays on the
    same side across dataset versions: a model is never scored on a row it was
    trained on, whatever rows are added later. Duplicated rows land together.

    Args:
        frame: Dataset with the contract's feature columns.
        holdout_fraction: Expected share of rows in the holdout, in (0, 1).
        contract: The data contract naming the feature columns.

    Returns:
        Boolean array, True for holdout rows.
    """
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    buckets = [
        int.from_bytes(hashlib.sha256(row).digest()[:8], "big") / 2**64
        for row in _canonical_rows(frame[contract.feature_names])
    ]
    return np.asarray(buckets) < holdout_fraction


def split(frame: pd.DataFrame, holdout_fraction: float,
          contract: DataContract) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``frame`` into (train, holdout) with the stable hash assignment."""
    mask = holdout_mask(frame, holdout_fraction, contract)
    train, holdout = frame[~mask], frame[mask]
    logger.info("split %d rows into %d train / %d holdout", len(frame), len(train), len(holdout))
    return train, holdout


def dataset_digest(frame: pd.DataFrame, contract: DataContract) -> str:
    """SHA-256 of the dataset's content: contract columns, row order kept.

    Independent of the file's formatting (quoting, trailing zeros, int vs float),
    so re-saving a CSV does not make it a new dataset version.
    """
    digest = hashlib.sha256(",".join(contract.columns).encode())
    for row in _canonical_rows(frame[contract.columns]):
        digest.update(b"\n" + row)
    return digest.hexdigest()


def check_rows(settings: Settings, spec: ModelSpec) -> tuple[np.ndarray, str]:
    """The rows a conversion is checked on: the spec's examples and the dataset's holdout.

    The holdout is the pipeline's own (the configured data file, split as
    training splits it). When the data file or config cannot be read here,
    the example rows alone are used, and the metadata says so.
    """
    from ml_service.errors import MlopsError
    from ml_service.training.config import load_config

    examples = np.asarray(spec.example, dtype=np.float64).reshape(
        -1, len(spec.contract.feature_names))
    try:
        config = load_config(settings.config_file, spec)
        _, holdout = split(load_data(settings.data_file), config.split.holdout_fraction,
                           spec.contract)
        rows = holdout[spec.contract.feature_names].to_numpy(dtype=np.float64)
    except (MlopsError, KeyError, ValueError) as exc:
        logger.warning("checking the ONNX form on the spec's example rows only: the holdout "
                       "of %s cannot be read (%s)", settings.data_file, exc)
        return examples, "the spec's example rows"
    return (np.vstack([examples, rows]),
            f"the spec's example rows and the holdout of {settings.data_file.name}")

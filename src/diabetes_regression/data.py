"""Loading, splitting and fingerprinting the diabetes data.

Pure functions on DataFrames, apart from ``read_dataset`` and ``write_reference``,
the two places that touch files.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from diabetes_regression.schema import CONTRACT, DataContract

logger = logging.getLogger(__name__)


def reference_frame() -> pd.DataFrame:
    """Return scikit-learn's diabetes data in raw clinical units.

    The data ships inside scikit-learn, so no download is needed.
    """
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(scaled=False, as_frame=True).frame
    return frame[CONTRACT.columns]


def write_reference(path: Path) -> Path:
    """Write the reference dataset to ``path`` as CSV and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    reference_frame().to_csv(path, index=False)
    return path


def read_dataset(path: Path) -> pd.DataFrame:
    """Read a dataset CSV without coercing types, so validation sees them as-is.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        pandas.errors.ParserError: If the file is not valid CSV.
    """
    return pd.read_csv(path)


def _canonical_rows(features: pd.DataFrame) -> list[bytes]:
    # repr of a float is the shortest exact round-trip form, so 59 and 59.0
    # (int or float columns) give the same bytes on every platform.
    values = features.to_numpy(dtype=float)
    return [",".join(repr(float(v)) for v in row).encode() for row in values]


def holdout_mask(
    frame: pd.DataFrame, holdout_fraction: float, contract: DataContract = CONTRACT
) -> np.ndarray:
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


def split(
    frame: pd.DataFrame, holdout_fraction: float, contract: DataContract = CONTRACT
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``frame`` into (train, holdout) with the stable hash assignment."""
    mask = holdout_mask(frame, holdout_fraction, contract)
    train, holdout = frame[~mask], frame[mask]
    logger.info("split %d rows into %d train / %d holdout", len(frame), len(train), len(holdout))
    return train, holdout


def dataset_digest(frame: pd.DataFrame, contract: DataContract = CONTRACT) -> str:
    """SHA-256 of the dataset's content: contract columns, row order kept.

    Independent of the file's formatting (quoting, trailing zeros, int vs float),
    so re-saving a CSV does not make it a new dataset version.
    """
    digest = hashlib.sha256(",".join(contract.columns).encode())
    for row in _canonical_rows(frame[contract.columns]):
        digest.update(b"\n" + row)
    return digest.hexdigest()


if __name__ == "__main__":  # pragma: no cover - exercised through `make data`
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "data/diabetes.csv")
    print(f"wrote {write_reference(target)}")

"""The diabetes dataset: scikit-learn's copy, in raw clinical units."""

from __future__ import annotations

import pandas as pd

from diabetes_regression.schema import CONTRACT


def reference_frame() -> pd.DataFrame:
    """Return scikit-learn's diabetes data in raw clinical units, contract columns only.

    The data ships inside scikit-learn, so no download is needed; `mlops data`
    writes it to the spec's ``data_path``.
    """
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(scaled=False, as_frame=True).frame
    return frame[CONTRACT.columns]

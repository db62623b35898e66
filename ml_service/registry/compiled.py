"""A registered model's compiled form: ONNX, made and checked at bundle time.

scikit-learn spends a few hundred microseconds validating its input on every
``predict`` call, whatever the row count; the scoring service already
guarantees the input (the data contract's width, types and ranges), so that
cost buys nothing there. At bundle time the model is converted to ONNX with
skl2onnx in double precision and run with onnxruntime, which costs about 10 us
per single-row call (see ``make bench``).

A conversion is only used if it predicts what the registry's model predicts:
the compiled model and the registry's model score the same rows (the spec's
example rows and the holdout of the configured dataset) and every prediction
must agree within :data:`ml_service.bundle.PREDICTION_RTOL` /
:data:`~ml_service.bundle.PREDICTION_ATOL` (``numpy.allclose``). The smoke
test of a release checks the served predictions with the same tolerance. An
estimator skl2onnx cannot convert, or a conversion that disagrees, leaves
the bundle on scikit-learn (``runtime.kind = "sklearn"``, with the reason),
and the image then carries scikit-learn instead of onnxruntime.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ml_service.bundle import ONNX_FILE, PREDICTION_ATOL, PREDICTION_RTOL
from ml_service.serving.onnx_model import OnnxPredictor
from ml_service.spec import predictions


logger = logging.getLogger(__name__)

#: The ONNX graph's input, a (rows, features) float64 tensor.
INPUT_NAME = "input"


def compile_model(model: Any, output: str, rows: np.ndarray,
                  rows_from: str) -> tuple[bytes | None, dict[str, Any]]:
    """Convert ``model`` to ONNX and check it against the model on ``rows``.

    Args:
        model: The registry's fitted scikit-learn estimator or pipeline.
        output: The spec's output method, ``predict`` or ``predict_proba``.
        rows: Feature rows in contract order to compare predictions on.
        rows_from: Where ``rows`` come from, for the bundle's metadata.

    Returns:
        (the ONNX model's bytes, the bundle's ``runtime`` entry), or (None,
        a ``runtime`` entry of kind ``sklearn`` with the reason) when the model
        cannot be converted or its conversion disagrees.
    """
    import onnxruntime
    import skl2onnx
    from skl2onnx.common.data_types import DoubleTensorType

    from sklearn.base import is_classifier

    rows = np.ascontiguousarray(rows, dtype=np.float64)
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    # A classifier's probabilities as a plain tensor, not a list of dicts.
    options = {id(final): {"zipmap": False}} if is_classifier(final) else None
    try:
        converted = skl2onnx.to_onnx(
            model, initial_types=[(INPUT_NAME, DoubleTensorType([None, rows.shape[1]]))],
            options=options,
        )
        payload = converted.SerializeToString()
        got = OnnxPredictor(payload, output).predict_output(rows)
    except Exception as exc:  # noqa: BLE001 - skl2onnx raises many kinds for unsupported models
        first = (str(exc).strip().splitlines() or [""])[0]
        reason = f"skl2onnx cannot convert it ({type(exc).__name__}: {first[:200]})"
        logger.warning("the model is served by scikit-learn: %s", reason)
        return None, {"kind": "sklearn", "reason": reason}
    import warnings

    with warnings.catch_warnings():  # fitted on a DataFrame, given the contract's array
        warnings.simplefilter("ignore", UserWarning)
        expected = predictions(model, rows, output)
    if got.shape != expected.shape:
        reason = f"its ONNX form answers in shape {got.shape}, the model in {expected.shape}"
        logger.warning("the model is served by scikit-learn: %s", reason)
        return None, {"kind": "sklearn", "reason": reason}
    difference = float(np.max(np.abs(got - expected))) if len(rows) else 0.0
    if not np.allclose(got, expected, rtol=PREDICTION_RTOL, atol=PREDICTION_ATOL):
        reason = (f"its ONNX form differs from it by up to {difference:.3g} on {len(rows)} rows "
                  f"({rows_from}), over the tolerance rtol={PREDICTION_RTOL:g}, "
                  f"atol={PREDICTION_ATOL:g}")
        logger.warning("the model is served by scikit-learn: %s", reason)
        return None, {"kind": "sklearn", "reason": reason}
    return payload, {
        "kind": "onnx",
        "file": ONNX_FILE,
        "converter": f"skl2onnx {skl2onnx.__version__}",
        "onnxruntime": onnxruntime.__version__,
        "opset": max((o.version for o in converted.opset_import if o.domain in ("", "ai.onnx")),
                     default=0),
        "checked_rows": int(len(rows)),
        "checked_on": rows_from,
        "max_abs_difference": difference,
        "rtol": PREDICTION_RTOL,
        "atol": PREDICTION_ATOL,
    }

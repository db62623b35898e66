"""A model's compiled form (ONNX, see :mod:`ml_service.registry.compiled`) run by onnxruntime.

Imports neither scikit-learn nor skl2onnx: the scoring image of a bundle with
an ONNX form carries onnxruntime alone.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ml_service.spec import predictions

# onnxruntime's Linux builds carry Microsoft's 1DS telemetry (opt-out since
# 1.2x: session events, a device identifier, a cache file in /tmp). Off unless
# the environment says otherwise; it must be set before onnxruntime starts.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


class OnnxPredictor:
    """An ONNX model run by onnxruntime, with scikit-learn's ``predict``/``predict_proba``.

    One thread per session: the service scores one request at a time per
    thread, and a 2-core container gains nothing from intra-op threads on
    matrices of a few thousand values.
    """

    def __init__(self, model: bytes | str, output: str):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(model, options,
                                                    providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        self.output = output
        # A regressor's one output ("variable"); a classifier's "label" and "probabilities".
        self.label = outputs[0]
        self.probabilities = "probabilities" if "probabilities" in outputs else outputs[-1]

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """The model's ``predict``."""
        result: np.ndarray = self.session.run([self.label], {self.input: _matrix(rows)})[0]
        return result

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """The model's ``predict_proba``: one column per class."""
        result: np.ndarray = self.session.run([self.probabilities],
                                              {self.input: _matrix(rows)})[0]
        return result

    def predict_output(self, rows: np.ndarray) -> np.ndarray:
        """What ``ml_service.spec.predictions`` gives for the spec's output."""
        return predictions(self, rows, self.output)


def _matrix(rows: Any) -> np.ndarray:
    return np.ascontiguousarray(rows, dtype=np.float64)

"""The smoke test: a new instance is healthy and predicts what the registry's model does."""

from __future__ import annotations

from typing import Any

import numpy as np

from ml_service.bundle import PREDICTION_ATOL, PREDICTION_RTOL
from ml_service.net import wait_for_http
from ml_service.release.ports import ReleaseError, ReleaseRegistry, SmokeCheck
from ml_service.spec import ModelSpec


def wait_healthy(url: str, deadline: float) -> float:
    """Poll ``url``/health until it answers 200; return the seconds it took.

    Raises:
        ReleaseError: If it does not within ``deadline`` seconds.
    """
    try:
        return wait_for_http(f"{url}/health", deadline)
    except TimeoutError as exc:
        raise ReleaseError(f"{url} not healthy: {exc}") from None


def smoke_test(url: str, version: int, expected: np.ndarray, rows: list[list[float]],
               deadline: float, partition: dict[str, Any] | None = None,
               key: str | None = None) -> None:
    """Wait for ``url`` to be healthy, then check it scores ``rows`` as ``expected``.

    With ``key`` (a deployed stage's API key) the rows are sent with it, and a
    request without it must be refused (401): a stage is never left open.

    Raises:
        ReleaseError: If the service is not healthy in time, serves another
            version, predicts differently from the registry's model, or
            scores without a key.
    """
    import requests

    wait_healthy(url, deadline)
    body: dict[str, Any] = {"data": rows}
    if partition:  # a many-models set: one partition's model
        body["partition"] = partition
    if key is not None:
        anonymous = requests.post(f"{url}/score", json=body, timeout=10)
        if anonymous.status_code != 401:
            raise ReleaseError(f"{url}/score answered {anonymous.status_code} to a request "
                               "without an API key, not 401: the stage would be open to "
                               "anyone who reaches it")
    headers = {"authorization": f"Bearer {key}"} if key is not None else {}
    response = requests.post(f"{url}/score", json=body, headers=headers, timeout=10)
    if response.status_code != 200:
        raise ReleaseError(f"{url}/score answered {response.status_code}: {response.text[:300]}")
    body = response.json()
    served = body.get("model", {}).get("version")
    if served != version:
        raise ReleaseError(f"{url} serves version {served}, expected {version}")
    got = np.asarray(body.get("result"), dtype=float)
    if expected.ndim == 2:  # multi-class: every class's probability, in the model's order
        got = np.asarray([[row[k] for k in sorted(row, key=float)]
                          for row in body.get("probabilities") or []], dtype=float)
    # The tolerance the bundle's compiled form was checked with (an image may
    # serve the model's ONNX form, equal to it up to rounding).
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=PREDICTION_RTOL,
                                                      atol=PREDICTION_ATOL):
        raise ReleaseError(
            f"{url} predictions {got.round(4).tolist()} differ from the registry model's "
            f"{expected.round(4).tolist()} (tolerance rtol={PREDICTION_RTOL:g}, "
            f"atol={PREDICTION_ATOL:g})"
        )


def smoke_check(registry: ReleaseRegistry, spec: ModelSpec, version: int,
                deadline: float) -> SmokeCheck:
    """The check for ``version``: the spec's example rows, scored as the registry's copy does."""
    import pandas as pd

    rows = [list(row) for row in spec.example]
    partition: dict[str, Any] | None = None
    if spec.partition_keys:
        partition, model = registry.sample_partition(version)
        expected = spec.predict(model, np.asarray(rows, dtype=float))
    else:
        model = registry.load_model(version)
        expected = spec.predict(model, pd.DataFrame(rows, columns=spec.contract.feature_names))

    def check(url: str, key: str) -> None:
        smoke_test(url, version, expected, rows, deadline, partition, key)

    return check

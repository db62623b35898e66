"""The scoring service: FastAPI app over a model bundle.

HTTP contract (MLOpsPython's, extended):

- ``POST /score`` with ``{"data": [[n numbers], ...]}`` or
  ``{"data": [{"feature": ..., ...}, ...]}`` returns
  ``{"result": [numbers], "model": {"name": ..., "version": ...}}``.
- ``GET /health``, ``GET /metadata``, ``GET /metrics`` (Prometheus), ``/docs``.
- For a many-models set the body also names its partition,
  ``{"partition": {"store": 3, "product": 7}, "data": [...]}``; the model is
  that partition's (loaded on demand into an LRU cache,
  :mod:`ml_service.serving.model_set`), an unknown partition is a 422, and
  ``model`` in the answer adds ``partition`` and ``source_version``.

Bad input never yields a 5xx: contract violations are 422 with the row and
feature named, bodies over the limit are 413. The model file's SHA-256 is
checked before the app accepts a request; a mismatch stops the start. The data
contract comes from the bundle, so the service knows no model package.

The module imports neither MLflow nor the training stack, so the scoring image
stays small.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from ml_service.bundle import MODEL_FILE, BundleMetadata, sha256_file
from ml_service.serving.metrics import MetricsMiddleware, ServiceMetrics
from ml_service.serving.model_set import ServedSet, SetIntegrityError, UnknownPartition
from ml_service.serving.requests import check_json, check_row_count, read_body, reject_constant
from ml_service.serving.schema import score_request_schema
from ml_service.serving.scoring_log import Batch, ScoringLog, now_iso
from ml_service.serving.validation import RequestError, RowValidator
from ml_service.settings import Settings
from ml_service.spec import predictions

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

logger = logging.getLogger(__name__)


def partition_key(keys: list[str], values: list[Any]) -> str:
    """``store=3/product=7``: the same key string training writes (see ml_service.many)."""
    def plain(value: Any) -> str:
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    return "/".join(f"{k}={plain(v)}" for k, v in zip(keys, values, strict=True))


class ModelIntegrityError(RuntimeError):
    """The bundled model file is not the one the image or bundle was built with."""


def load_bundle(directory: Path, expected_sha256: str | None = None,
                cache_size: int = 1_000) -> tuple[Any, BundleMetadata]:
    """Load a bundle's model after checking its SHA-256.

    Args:
        directory: Bundle directory (model file and metadata.json).
        expected_sha256: Hash to check against; defaults to the one in metadata.json.

    Returns:
        (model, metadata)

    Raises:
        ModelIntegrityError: If the file's hash is not the expected one.
        FileNotFoundError: If the bundle is incomplete.
    """
    import skops.io

    metadata = BundleMetadata.read(directory)
    expected = (expected_sha256 or metadata.sha256).lower()
    if metadata.partition_keys:
        try:
            return ServedSet(directory, expected, cache_size,
                             metadata.set_index_sha256, metadata.version), metadata
        except SetIntegrityError as exc:
            raise ModelIntegrityError(str(exc)) from None
    actual = sha256_file(directory / MODEL_FILE)
    if actual != expected:
        raise ModelIntegrityError(
            f"model file {directory / MODEL_FILE} has SHA-256 {actual}, expected {expected}: "
            "refusing to serve a model that is not the one this bundle was built with"
        )
    model = skops.io.load(directory / MODEL_FILE, trusted=[])
    return model, metadata


#: Bodies up to this size are scored on the event loop (about 20 rows of ten features).
_INLINE_BODY_BYTES = 2048


def read_card(directory: Path, metadata: BundleMetadata) -> tuple[bytes | None, str]:
    """The bundle's model card (JSON bytes, Markdown), or (None, "") if it has none.

    Raises:
        RuntimeError: If the card describes another model or version than the bundle's.
    """
    path = directory / "model_card.json"
    if not path.is_file():
        return None, ""
    raw = path.read_bytes()
    about = json.loads(raw).get("model", {})
    if (about.get("name"), about.get("version")) != (metadata.name, metadata.version):
        raise RuntimeError(f"the bundle's model card describes {about.get('name')} version "
                           f"{about.get('version')}, not {metadata.name} version "
                           f"{metadata.version}: refusing to serve it")
    return raw, (directory / "model_card.md").read_text()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for the bundle in ``settings.bundle_dir``.

    The model is loaded (and its hash checked) here, before any request, so a
    broken bundle stops the process instead of failing requests. Request
    validation and the ``/docs`` schema come from the data contract the bundle
    carries.
    """
    settings = settings or Settings()
    model, metadata = load_bundle(settings.bundle_dir, settings.model_sha256,
                                  settings.model_cache_size)
    served_set = model if isinstance(model, ServedSet) else None
    keys = metadata.partition_keys
    contract = metadata.data_contract
    validate = RowValidator(contract, settings.max_rows)
    busy = asyncio.Semaphore(settings.max_concurrent_scoring)

    def _partition(given: Any) -> tuple[Any, dict[str, Any]]:
        """The model of the request's partition, and what the answer says about it."""
        assert served_set is not None
        if not isinstance(given, dict):
            raise RequestError(f'a many-models set needs "partition": an object with '
                               f'{", ".join(keys)}')
        absent = [k for k in keys if k not in given]
        extra = sorted(set(given) - set(keys))
        if absent or extra:
            raise RequestError(f"partition must name exactly {', '.join(keys)}"
                               + (f"; missing {', '.join(absent)}" if absent else "")
                               + (f"; unknown {', '.join(extra)}" if extra else ""))
        values = [given[k] for k in keys]
        if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool)
                   for v in values):
            raise RequestError("partition values must be numbers or strings")
        key = partition_key(keys, values)
        try:
            chosen = served_set.model(key)
        except UnknownPartition:
            raise RequestError(f"no model for partition {key} in this set") from None
        return chosen, {"partition": key, "source_version": served_set.source_version(key),
                        "values": tuple(values)}

    def _payload(body: bytes) -> dict[str, Any]:
        """The body parsed by the standard library: the precise path for errors."""
        try:
            payload = json.loads(body, parse_constant=reject_constant)
        except RequestError:
            raise
        except (ValueError, RecursionError):
            raise RequestError("request body is not valid JSON") from None
        if not isinstance(payload, dict) or "data" not in payload:
            raise RequestError('request body must be a JSON object with a "data" list')
        return payload

    def _predict(body: bytes) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        fast = validate.fast(body)
        if fast is not None:  # the common, valid request: decoded and checked in C and numpy
            matrix, given = fast
            chosen, about = _partition(given) if served_set is not None else (model, {})
        else:  # records, or something to name precisely (partition first, then rows)
            payload = _payload(body)
            chosen, about = (_partition(payload.get("partition")) if served_set is not None
                             else (model, {}))
            matrix = validate(payload["data"])
        with warnings.catch_warnings():
            # The pipeline was fitted on a DataFrame; rows arrive as a bare
            # array in contract order, which is what it expects.
            warnings.simplefilter("ignore", UserWarning)
            return matrix, predictions(chosen, matrix, metadata.output), about

    metrics = ServiceMetrics(metadata)
    if served_set is not None:
        metrics.watch_cache(served_set)
    model_ref = {"name": metadata.name, "version": metadata.version}
    scoring_log = None
    if settings.scoring_log_dir is not None:
        scoring_log = ScoringLog(
            settings.scoring_log_dir, contract.feature_names, metadata.name, metadata.version,
            max_bytes=settings.scoring_log_max_bytes,
            max_pending=settings.scoring_log_max_pending,
            ship_to=settings.scoring_log_uri,
            max_age=settings.scoring_log_rotate_seconds,
            max_total=settings.scoring_log_max_total_bytes,
            partition_keys=keys,
        )
        metrics.watch_log(scoring_log)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if scoring_log is not None:  # SIGTERM ends here: drain before exiting
            scoring_log.close()
            logger.info("scoring log closed: %d rows written", scoring_log.rows_written)

    app = FastAPI(
        title="Scoring service",
        version=str(metadata.version),
        description=f"Scores `{metadata.name}` version {metadata.version}.",
        lifespan=lifespan,
        # No redirect from /score/ to /score: its Location would be built from
        # the client's Host header.
        redirect_slashes=False,
    )
    app.state.scoring_log = scoring_log
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(RequestError)
    async def request_error(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(exc.as_json(), status_code=exc.status)

    @app.post(
        "/score",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {
                    "schema": score_request_schema(contract, metadata.example, keys,
                                                   metadata.example_partition)}},
            }
        },
        responses={413: {"description": "Body or row count over the limit"},
                   415: {"description": "The body is not JSON"},
                   422: {"description": "A row breaks the data contract"},
                   503: {"description": "The scoring log is full: retry later"}},
    )
    async def score(request: Request) -> Response:
        """Predict for each row of ``data``."""
        check_json(request)
        body = await read_body(request, settings.max_body_bytes)
        check_row_count(body, settings.max_rows)
        # Parsing, validation and prediction are CPU work. A small body (a
        # few rows: well under a millisecond) is scored right here, which
        # spares the hop to a thread; a larger one goes to a worker thread,
        # so the event loop keeps answering /health. At most
        # MLOPS_MAX_CONCURRENT_SCORING requests are scored at once.
        async with busy:
            if len(body) <= _INLINE_BODY_BYTES:
                matrix, predictions, about = _predict(body)
            else:
                matrix, predictions, about = await run_in_threadpool(_predict, body)
        given = request.headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        values = about.pop("values", ())
        if scoring_log is not None and not scoring_log.submit(
            Batch(request_id, now_iso(), matrix, predictions, values,
                  about.get("source_version"))
        ):
            metrics.log_refused.inc()
            return JSONResponse(
                {"detail": "the scoring log is behind; retry shortly", "row": None,
                 "feature": None},
                status_code=503, headers={"Retry-After": "1"},
            )
        metrics.rows.inc(len(predictions))
        metrics.predictions.observe_many(predictions)
        answer = {"result": predictions.tolist(), "model": {**model_ref, **about},
                  "request_id": request_id}
        return Response(msgspec.json.encode(answer), media_type="application/json",
                        headers={"X-Request-ID": request_id})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Live, with the model loaded."""
        return {"status": "ok", "model": model_ref}

    @app.get("/metadata")
    async def model_metadata() -> dict[str, Any]:
        """Name, version, git commit, dataset digest, metrics and features of the model."""
        return asdict(metadata)

    card_json, card_markdown = read_card(settings.bundle_dir, metadata)

    @app.get("/model-card", responses={404: {"description": "The bundle has no model card."}})
    async def model_card(request: Request, format: str = "json") -> Response:
        """The model card of the served version: JSON, or Markdown with
        ``?format=markdown`` or ``Accept: text/markdown``."""
        if card_json is None:
            return JSONResponse({"detail": f"{metadata.name} version {metadata.version} has no "
                                           "model card (registered before cards existed)"},
                                status_code=404)
        if format == "markdown" or "text/markdown" in request.headers.get("accept", ""):
            return Response(card_markdown, media_type="text/markdown; charset=utf-8")
        return Response(card_json, media_type="application/json")

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    logger.info("serving %s v%s from %s", metadata.name, metadata.version, settings.bundle_dir)
    return app

"""The scoring service: FastAPI app over a model bundle.

HTTP contract (MLOpsPython's, extended):

- ``POST /score`` with ``{"data": [[10 numbers], ...]}`` or
  ``{"data": [{"age": ..., ...}, ...]}`` returns
  ``{"result": [numbers], "model": {"name": ..., "version": ...}}``.
- ``GET /health``, ``GET /metadata``, ``GET /metrics`` (Prometheus), ``/docs``.

Bad input never yields a 5xx: contract violations are 422 with the row and
feature named, bodies over the limit are 413. The model file's SHA-256 is
checked before the app accepts a request; a mismatch stops the start.

The module imports neither MLflow nor the training stack, so the scoring image
stays small.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
import warnings
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from diabetes_regression.schema import CONTRACT, DataContract
from ml_service.bundle import MODEL_FILE, BundleMetadata, sha256_file
from ml_service.scoring import RequestError, RowValidator
from ml_service.scoring_log import Batch, ScoringLog, now_iso
from ml_service.settings import Settings

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

logger = logging.getLogger(__name__)


class ModelIntegrityError(RuntimeError):
    """The bundled model file is not the one the image or bundle was built with."""


def load_bundle(directory: Path, expected_sha256: str | None = None):
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
    actual = sha256_file(directory / MODEL_FILE)
    if actual != expected:
        raise ModelIntegrityError(
            f"model file {directory / MODEL_FILE} has SHA-256 {actual}, expected {expected}: "
            "refusing to serve a model that is not the one this bundle was built with"
        )
    model = skops.io.load(directory / MODEL_FILE, trusted=[])
    return model, metadata


class _Metrics:
    """The service's Prometheus metrics, in a registry of its own."""

    def __init__(self, metadata: BundleMetadata):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "scoring_requests", "HTTP requests by route and status.",
            ["route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "scoring_request_seconds", "HTTP request latency by route and status.",
            ["route", "status"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.rows = Counter("scoring_rows", "Rows scored.", registry=self.registry)
        self.predictions = Histogram(
            "scoring_prediction", "Distribution of predicted values.", registry=self.registry,
            buckets=(25, 50, 75, 100, 125, 150, 175, 200, 250, 300, 350),
        )
        info = Gauge(
            "scoring_model_info", "The model being served (value is always 1).",
            ["name", "version", "git_commit"], registry=self.registry,
        )
        info.labels(metadata.name, str(metadata.version), metadata.git_commit).set(1)

    def watch_log(self, log: ScoringLog) -> None:
        """Export the scoring log's queue depth, rows written and refusals."""
        Gauge("scoring_log_queue_depth", "Requests waiting to be written to the scoring log.",
              registry=self.registry).set_function(log.depth)
        Gauge("scoring_log_rows_written", "Rows written to the scoring log.",
              registry=self.registry).set_function(lambda: log.rows_written)
        self.log_refused = Counter(
            "scoring_log_refused", "Requests refused (503) because the scoring log was full.",
            registry=self.registry,
        )
        Gauge("scoring_log_files_dropped", "Oldest log files deleted unshipped to stay under "
              "the size cap.", registry=self.registry).set_function(lambda: log.files_dropped)
        if log.shipper is not None:
            shipper = log.shipper
            Gauge("scoring_log_files_shipped", "Closed log files uploaded to object storage.",
                  registry=self.registry).set_function(lambda: shipper.files_shipped)
            Gauge("scoring_log_ship_failures", "Uploads that failed (the file is kept and "
                  "retried).", registry=self.registry).set_function(lambda: shipper.failures)


class _MetricsMiddleware:
    """Pure ASGI middleware: counts every response by route template and status."""

    def __init__(self, app, metrics: _Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            code = str(status["code"])
            self.metrics.requests.labels(path, code).inc()
            self.metrics.latency.labels(path, code).observe(time.perf_counter() - start)


# nginx's code for "client closed the request": counted, never a 5xx.
CLIENT_CLOSED = 499


def _check_json(request: Request) -> None:
    """Only JSON is scored: a form or text body (a cross-site form post) is 415.

    A request with no Content-Type at all is read as JSON: browsers always
    label what they send, so that is not the cross-site case.
    """
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media != "application/json" and not (media.startswith("application/")
                                                      and media.endswith("+json")):
        raise RequestError(f"Content-Type must be application/json, got {media or 'none'}",
                           status=415)


async def _read_body(request: Request, limit: int) -> bytes:
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"request body of {declared} bytes exceeds {limit}", status=413)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(f"request body exceeds {limit} bytes", status=413)
            chunks.append(chunk)
    except ClientDisconnect:
        raise RequestError("the client closed the connection before its body arrived",
                           status=CLIENT_CLOSED) from None
    return b"".join(chunks)


def _check_row_count(body: bytes, max_rows: int) -> None:
    """413 before parsing when the body holds more rows than allowed.

    Rows are lists or objects of numbers, so a body with at most ``max_rows``
    rows has at most ``max_rows + 1`` pairs of each kind of bracket; counting
    them is a C loop, where parsing a body of a million empty rows takes a
    second. (Unbalanced junk such as ``[[[[...`` is left to the parser: 422.)
    """
    rows = max(min(body.count(b"["), body.count(b"]")),
               min(body.count(b"{"), body.count(b"}"))) - 1
    if rows > max_rows:
        raise RequestError(f"too many rows: {rows} > {max_rows} per request (counted before "
                           "parsing)", status=413)


def _reject_constant(name: str):
    raise RequestError(f"{name} is not a valid JSON number")


SCORE_REQUEST_SCHEMA = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "array",
            "minItems": 1,
            "items": {
                "oneOf": [
                    {
                        "type": "array",
                        "items": {"type": "number"},
                        "minItems": len(CONTRACT.features),
                        "maxItems": len(CONTRACT.features),
                        "description": "values in order: " + ", ".join(CONTRACT.feature_names),
                    },
                    {
                        "type": "object",
                        "required": CONTRACT.feature_names,
                        "additionalProperties": False,
                        "properties": {
                            f.name: {
                                "type": "number",
                                "minimum": f.minimum,
                                "maximum": f.maximum,
                                "description": f.description,
                            }
                            for f in CONTRACT.features
                        },
                    },
                ]
            },
        }
    },
    "example": {"data": [[59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]]},
}


def create_app(
    settings: Settings | None = None,
    contract: DataContract = CONTRACT,
) -> FastAPI:
    """Build the app for the bundle in ``settings.bundle_dir``.

    The model is loaded (and its hash checked) here, before any request, so a
    broken bundle stops the process instead of failing requests.
    """
    settings = settings or Settings()
    model, metadata = load_bundle(settings.bundle_dir, settings.model_sha256)
    validate = RowValidator(contract, settings.max_rows)
    busy = asyncio.Semaphore(settings.max_concurrent_scoring)

    def _predict(body: bytes) -> tuple[np.ndarray, np.ndarray]:
        try:
            payload = json.loads(body, parse_constant=_reject_constant)
        except RequestError:
            raise
        except (ValueError, RecursionError):
            raise RequestError("request body is not valid JSON") from None
        if not isinstance(payload, dict) or "data" not in payload:
            raise RequestError('request body must be a JSON object with a "data" list')
        matrix = validate(payload["data"])
        with warnings.catch_warnings():
            # The pipeline was fitted on a DataFrame; rows arrive as a bare
            # array in contract order, which is what it expects.
            warnings.simplefilter("ignore", UserWarning)
            return matrix, np.asarray(model.predict(matrix), dtype=float)
    metrics = _Metrics(metadata)
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
        )
        metrics.watch_log(scoring_log)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
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
    app.add_middleware(_MetricsMiddleware, metrics=metrics)

    @app.exception_handler(RequestError)
    async def request_error(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(exc.as_json(), status_code=exc.status)

    @app.post(
        "/score",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": SCORE_REQUEST_SCHEMA}},
            }
        },
        responses={413: {"description": "Body or row count over the limit"},
                   415: {"description": "The body is not JSON"},
                   422: {"description": "A row breaks the data contract"},
                   503: {"description": "The scoring log is full: retry later"}},
    )
    async def score(request: Request) -> JSONResponse:
        """Predict for each row of ``data``."""
        _check_json(request)
        body = await _read_body(request, settings.max_body_bytes)
        _check_row_count(body, settings.max_rows)
        # Parsing, validation and prediction are CPU work: a worker thread
        # does them, so the event loop keeps answering /health; at most
        # MLOPS_MAX_CONCURRENT_SCORING requests do so at once, the rest wait.
        async with busy:
            matrix, predictions = await run_in_threadpool(_predict, body)
        given = request.headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        if scoring_log is not None and not scoring_log.submit(
            Batch(request_id, now_iso(), matrix, predictions)
        ):
            metrics.log_refused.inc()
            return JSONResponse(
                {"detail": "the scoring log is behind; retry shortly", "row": None,
                 "feature": None},
                status_code=503, headers={"Retry-After": "1"},
            )
        metrics.rows.inc(len(predictions))
        for value in predictions:
            metrics.predictions.observe(value)
        return JSONResponse(
            {"result": predictions.tolist(), "model": model_ref, "request_id": request_id},
            headers={"X-Request-ID": request_id},
        )

    @app.get("/health")
    async def health() -> dict:
        """Live, with the model loaded."""
        return {"status": "ok", "model": model_ref}

    @app.get("/metadata")
    async def model_metadata() -> dict:
        """Name, version, git commit, dataset digest, metrics and features of the model."""
        return asdict(metadata)

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    logger.info("serving %s v%s from %s", metadata.name, metadata.version, settings.bundle_dir)
    return app


def main() -> None:
    """Run the service with uvicorn on ``MLOPS_SERVE_HOST:MLOPS_SERVE_PORT``."""
    from ml_service import http_server

    settings = Settings()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(settings)
    except (ModelIntegrityError, FileNotFoundError) as exc:
        logger.error("cannot start: %s", exc)
        raise SystemExit(3) from None
    http_server.run(app, settings.serve_host, settings.serve_port,
                    request_timeout=settings.request_timeout,
                    keep_alive=settings.keep_alive_timeout)


if __name__ == "__main__":
    main()

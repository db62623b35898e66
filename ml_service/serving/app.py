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
feature named, bodies over the limit are 413. ``/score`` takes an API key
(``Authorization: Bearer`` or ``api-key``; :mod:`ml_service.serving.auth`):
without one it is 401, before the body is read. The model file's SHA-256 is
checked before the app accepts a request; a mismatch stops the start. The data
contract comes from the bundle, so the service knows no model package.

The module imports neither MLflow nor the training stack, so the scoring image
stays small.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ml_service import signing
from ml_service.bundle import MODEL_FILE, ONNX_FILE, BundleMetadata, load_skops, sha256_file
from ml_service.serving.auth import metrics_keys, score_keys
from ml_service.serving.draining import Drain, DrainMiddleware
from ml_service.serving.metrics import MetricsMiddleware, ServiceMetrics
from ml_service.serving.onnx_model import OnnxPredictor
from ml_service.serving.model_set import ServedSet, SetIntegrityError
from ml_service.serving.scoring import ScoreHandler, ScoreRoute
from ml_service.serving.schema import score_request_schema, score_response_schema
from ml_service.serving.scoring_log import ScoringLog
from ml_service.serving.shadow import Mirror
from ml_service.serving.validation import RequestError
from ml_service.settings import Settings


logger = logging.getLogger(__name__)


class ModelIntegrityError(RuntimeError):
    """The bundled model file is not the one the image or bundle was built with."""


def load_bundle(directory: Path, expected_sha256: str | None = None,
                cache_size: int = 1_000, runtime: str = "auto",
                trusted: Path | None = None) -> tuple[Any, BundleMetadata]:
    """Load a bundle's model after checking its signature and its SHA-256.

    The signature comes first (``model.sig`` against the trusted keys of
    ``trusted``, default the repository's; the image's copy in a container):
    nothing of the bundle, metadata included, is read before it holds.

    Args:
        directory: Bundle directory (model file and metadata.json).
        expected_sha256: Hash to check against; defaults to the one in metadata.json.
        cache_size: Many-models sets: partition models held at once.
        runtime: ``auto`` (the ONNX form when the bundle has one), ``onnx`` or ``sklearn``.

    Returns:
        (model, metadata): the model has scikit-learn's ``predict``/``predict_proba``.

    Raises:
        ModelIntegrityError: If a file's hash is not the expected one.
        FileNotFoundError: If the bundle is incomplete.
        RuntimeError: If the runtime asked for is not in the bundle or this environment.
        SignatureError: If the bundle is unsigned, signed by an untrusted key, or
            changed since it was signed.
    """
    signing.verify(directory, f"the bundle in {directory}", trusted)
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
    if runtime == "onnx" or (runtime == "auto" and metadata.runtime_kind == "onnx"):
        if metadata.runtime_kind != "onnx":
            raise RuntimeError(f"MLOPS_MODEL_RUNTIME=onnx, but the bundle has no ONNX form: "
                               f"{metadata.runtime.get('reason', 'made before compiled forms')}")
        onnx = directory / ONNX_FILE
        found = sha256_file(onnx)
        if found != metadata.runtime.get("sha256"):
            raise ModelIntegrityError(
                f"{onnx} has SHA-256 {found}, expected {metadata.runtime.get('sha256')}: "
                "refusing to serve a compiled model that is not the one checked at bundle time")
        return OnnxPredictor(onnx.read_bytes(), metadata.output), metadata
    try:
        import skops.io  # noqa: F401 - here only to say what is missing
    except ImportError:
        raise RuntimeError("this environment has no scikit-learn and skops (an image for ONNX "
                           "bundles), and this bundle must be run by scikit-learn: "
                           f"{metadata.runtime.get('reason', 'made before compiled forms')}"
                           ) from None
    # skops' default types and the spec's trusted_types, as signed with the bundle.
    model = load_skops(directory / MODEL_FILE, f"the model of the bundle in {directory}",
                       metadata.trusted_types)
    return model, metadata


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


def create_app(settings: Settings | None = None, host: str | None = None) -> FastAPI:
    """Build the app for the bundle in ``settings.bundle_dir``.

    The model is loaded (and its hash checked) here, before any request, so a
    broken bundle stops the process instead of failing requests. Request
    validation and the ``/docs`` schema come from the data contract the bundle
    carries. ``/score`` requires one of the API keys configured; without any
    it is served only on a loopback ``host`` (default ``MLOPS_SERVE_HOST``)
    or with ``MLOPS_ANONYMOUS_SCORING=true`` (:mod:`ml_service.serving.auth`).

    Raises:
        ApiKeyError: If there are no keys and the service would be open to others.
    """
    settings = settings or Settings()
    model, metadata = load_bundle(settings.bundle_dir, settings.model_sha256,
                                  settings.model_cache_size, settings.model_runtime,
                                  settings.signing_trusted)
    api_keys = score_keys(settings, host or settings.serve_host)
    scrape_keys = metrics_keys(settings)
    served_set = model if isinstance(model, ServedSet) else None
    keys = metadata.partition_keys
    contract = metadata.data_contract

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

    drain = Drain(settings.drain_file) if settings.drain_file is not None else None
    mirror = None
    if settings.shadow_file is not None:
        log_dir = settings.scoring_log_dir

        def side_by_side(version: int) -> ScoringLog:
            assert log_dir is not None
            return ScoringLog(log_dir, [*contract.feature_names, "production_prediction"],
                              metadata.name, version,
                              max_bytes=settings.scoring_log_max_bytes,
                              ship_to=settings.scoring_log_uri,
                              max_age=settings.scoring_log_rotate_seconds,
                              # a quarter of the scoring log's room, beside it on the volume
                              max_total=settings.scoring_log_max_total_bytes // 4,
                              prefix="shadow")

        mirror = Mirror(settings.shadow_file, metrics.registry, metadata.prediction_range,
                        side_by_side=side_by_side if log_dir is not None and not keys else None)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watcher = asyncio.create_task(drain.watch()) if drain is not None else None
        yield
        if watcher is not None:
            watcher.cancel()
        if scoring_log is not None:  # SIGTERM ends here: drain before exiting
            scoring_log.close()
            logger.info("scoring log closed: %d rows written", scoring_log.rows_written)
        if mirror is not None:  # after the log: copies are worth less than the record
            mirror.close()

    app = FastAPI(
        title="Scoring service",
        version=str(metadata.version),
        description=f"Scores `{metadata.name}` version {metadata.version}.",
        lifespan=lifespan,
        # No redirect from /score/ to /score: its Location would be built from
        # the client's Host header.
        redirect_slashes=False,
        # The service exports Prometheus metrics (/metrics) and the image has
        # no OpenTelemetry SDK: FastAPI's own instrumentation would only cost
        # its per-request checks (about a tenth of a single-row request).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.scoring_log = scoring_log
    app.state.api_keys = api_keys
    app.state.mirror = mirror

    handler = ScoreHandler(settings, model, metadata, served_set, metrics, scoring_log,
                           api_keys, mirror)

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
        responses={200: {"description": "One prediction per row",
                         "content": {"application/json": {
                             "schema": score_response_schema(metadata)}}},
                   401: {"description": "No API key, or one not accepted"},
                   413: {"description": "Body or row count over the limit"},
                   415: {"description": "The body is not JSON"},
                   422: {"description": "A row breaks the data contract"},
                   503: {"description": "The scoring log is full: retry later"}},
    )
    async def score(request: Request) -> Response:
        """Predict for each row of ``data``.

        Served by :class:`ml_service.serving.scoring.ScoreRoute` ahead of
        FastAPI's routing; this endpoint gives the same answer.
        """
        status, body, headers = await handler.respond(request.scope["headers"],
                                                      request.receive)
        return Response(body, status, headers={k.decode(): v.decode() for k, v in headers})

    score_route = next(r for r in app.routes if getattr(r, "path", None) == "/score")
    # The last added is the outermost: the metrics middleware counts /score too.
    app.add_middleware(ScoreRoute, handler=handler, route=score_route)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if drain is not None:  # outermost: every answer, /health and errors included
        app.add_middleware(DrainMiddleware, drain=drain)

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

    refused = "MLOPS_METRICS_KEYS are set, and the request sent none of them"

    @app.get("/metrics", responses={401: {"description": refused}})
    async def prometheus(request: Request) -> Response:
        """Prometheus metrics (with a key when ``MLOPS_METRICS_KEYS`` is set)."""
        if scrape_keys is not None and scrape_keys.identify(
                request.headers.get("authorization", ""),
                request.headers.get("api-key", "")) is None:
            return JSONResponse({"detail": "/metrics requires one of MLOPS_METRICS_KEYS",
                                 "row": None, "feature": None}, status_code=401,
                                headers={"www-authenticate": 'Bearer realm="metrics"'})
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    logger.info("serving %s v%s from %s", metadata.name, metadata.version, settings.bundle_dir)
    return app

"""``POST /score``: from the request's bytes to the answer's, on the service's hot path.

:class:`ScoreHandler` reads, validates, predicts, logs and counts one request
and returns the status, body and headers of the answer. It is reached
through :class:`ScoreRoute`, a bare ASGI middleware in front of FastAPI's
routing: a single-row request costs tens of microseconds here, where
FastAPI's request, dependency and response objects cost more than the whole
prediction. FastAPI still declares the route (its schema is what ``/docs``
shows) and serves every other path; its ``/score`` endpoint calls the same
handler.

Bad input never yields a 5xx: contract violations are 422 with the row and
feature named, bodies over the limit are 413, a body that is not JSON is 415.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import warnings
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
from starlette.concurrency import run_in_threadpool

from ml_service.serving.model_set import UnknownPartition
from ml_service.serving.requests import CLIENT_CLOSED, check_row_count, media_type, reject_constant
from ml_service.serving.scoring_log import Batch, ScoringLog, now_iso
from ml_service.serving.validation import RequestError, RowValidator
from ml_service.classification import label_text
from ml_service.spec import labels, point_predictions, predictions

if TYPE_CHECKING:
    from ml_service.serving.shadow import Mirror
    from ml_service.bundle import BundleMetadata
    from ml_service.serving.auth import KeyRing
    from ml_service.serving.metrics import ServiceMetrics
    from ml_service.serving.model_set import ServedSet
    from ml_service.settings import Settings

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: Bodies up to this size (about 4,000 rows of ten features, a few milliseconds
#: of work) are scored on the event loop; larger ones in a worker thread.
INLINE_BODY_BYTES = 256 * 1024
#: Past this size the flat path (simdjson) is cheaper than msgspec.
FLAT_BODY_BYTES = 2048
Headers = list[tuple[bytes, bytes]]
_JSON = (b"content-type", b"application/json")
_CHALLENGE = (b"www-authenticate", b'Bearer realm="scoring"')


def partition_key(keys: list[str], values: list[Any]) -> str:
    """``store=3/product=7``: the same key string training writes (see ml_service.many)."""
    def plain(value: Any) -> str:
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    return "/".join(f"{k}={plain(v)}" for k, v in zip(keys, values, strict=True))


def _number(value: float) -> int | float:
    """A class as a JSON number: 2, not 2.0."""
    return int(value) if float(value).is_integer() else float(value)


def error_body(exc: RequestError) -> bytes:
    """The JSON error: ``detail`` for people, ``row``/``feature`` for programs."""
    return msgspec.json.encode(exc.as_json())


class ScoreHandler:
    """Scores one /score request for a bundle's model (or many-models set)."""

    def __init__(self, settings: Settings, model: Any, metadata: BundleMetadata,
                 served_set: ServedSet | None, metrics: ServiceMetrics,
                 scoring_log: ScoringLog | None, keys: KeyRing | None = None,
                 mirror: Mirror | None = None):
        self.settings, self.model, self.metadata = settings, model, metadata
        #: Copies answered requests to a shadow (MLOPS_SHADOW_FILE), off the response path.
        self.mirror = mirror
        #: The accepted API keys; None: /score is open (loopback, or anonymous on purpose).
        self.api_keys = keys
        self.served_set, self.metrics, self.scoring_log = served_set, metrics, scoring_log
        self.keys = metadata.partition_keys
        self.validate = RowValidator(metadata.data_contract, settings.max_rows)
        self.busy = asyncio.Semaphore(settings.max_concurrent_scoring)
        self.model_ref = {"name": metadata.name, "version": metadata.version}
        #: A classifier's classes: numbers in ``labels``, text as ``probabilities``' keys.
        self.classes = metadata.classes
        self.class_keys = [label_text(c) for c in self.classes]
        self.class_values = [_number(c) for c in self.classes]

    async def respond(self, headers: Headers, receive: Any) -> tuple[int, bytes, Headers]:
        """(status, body, headers) of the answer to a request whose body ``receive`` yields."""
        try:
            return await self._score(headers, receive)
        except RequestError as exc:
            return exc.status, error_body(exc), ([_JSON, _CHALLENGE] if exc.status == 401
                                                 else [_JSON])

    async def _score(self, headers: Headers, receive: Any) -> tuple[int, bytes, Headers]:
        given_id, declared, content_type, authorization, api_key = "", None, "", "", ""
        for name, value in headers:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
            elif name == b"x-request-id":
                given_id = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"api-key":
                api_key = value.decode("latin-1")
        key_id = None
        if self.api_keys is not None:  # before the body is read: strangers cost nothing
            key_id = self.api_keys.identify(authorization, api_key)
            if key_id is None:
                raise RequestError(
                    "an API key is required: send `Authorization: Bearer <key>` or "
                    "`api-key: <key>`" if not (authorization or api_key)
                    else "this API key is not accepted", status=401)
        media_type(content_type)
        body = await read_body(receive, declared, self.settings.max_body_bytes)
        # Parsing, validation and prediction are CPU work. A body of up to a
        # few thousand rows is scored right here: the hop to a thread and back
        # costs more than scoring 1,000 rows (measured with `make bench`:
        # 0.69M rows/s through a thread, 1.0M inline). A larger one goes to a
        # worker thread, so the event loop keeps answering /health. At most
        # MLOPS_MAX_CONCURRENT_SCORING requests are scored at once.
        async with self.busy:
            if len(body) <= INLINE_BODY_BYTES:
                matrix, predicted, about = self.predict(body)
            else:
                matrix, predicted, about = await run_in_threadpool(self.predict, body)
        request_id = given_id if _REQUEST_ID.fullmatch(given_id) else os.urandom(16).hex()
        values = about.pop("values", ())
        point = point_predictions(predicted, self.classes)
        if self.scoring_log is not None and not self.scoring_log.submit(
            Batch(request_id, now_iso(), matrix, point, values, about.get("source_version"),
                  key_id)
        ):
            self.metrics.log_refused.inc()
            return 503, (b'{"detail":"the scoring log is behind; retry shortly","row":null,'
                         b'"feature":null}'), [_JSON, (b"retry-after", b"1")]
        self.metrics.rows.inc(len(point))
        self.metrics.predictions.observe_many(point)
        answer = {"result": point.tolist(), "model": {**self.model_ref, **about},
                  "request_id": request_id}
        if self.classes:
            answer.update(self.classified(predicted))
        if self.mirror is not None:
            credentials = ({"authorization": authorization} if authorization else
                           {"api-key": api_key} if api_key else {})
            self.mirror.offer(body, {"content-type": "application/json",
                                     "x-request-id": request_id, **credentials}, point,
                              matrix if not self.keys else None, request_id)
        return 200, msgspec.json.encode(answer), [_JSON, (b"x-request-id", request_id.encode())]

    def classified(self, predicted: np.ndarray) -> dict[str, Any]:
        """A classifier's ``labels`` and each row's ``probabilities`` by class (and, for a
        multi-class one, ``result``: its labels as the classes are written, 2 not 2.0)."""
        multiclass = predicted.ndim == 2
        chosen = labels(predicted, self.classes, self.metadata.threshold)
        if not multiclass:  # binary: the probability of the last class
            predicted = np.column_stack((1.0 - predicted, predicted))
        named = dict(zip(self.classes, self.class_values))
        keys = self.class_keys
        written = [named[c] for c in chosen.tolist()]
        return {**({"result": written} if multiclass else {}), "labels": written,
                "probabilities": [dict(zip(keys, row)) for row in predicted.tolist()]}

    def predict(self, body: bytes) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """(rows, predictions, what the answer says about the model) for a request body.

        Raises:
            RequestError: If the request breaks the contract (see RowValidator).
        """
        # The flat path pays off past a few rows; msgspec is cheaper below.
        flat = (self.validate.flat(body) if self.served_set is None
                and len(body) > FLAT_BODY_BYTES else None)
        # Before a parser that builds objects: a body of a million empty rows
        # would take a second to parse (the flat path counts them itself).
        if flat is None:
            check_row_count(body, self.settings.max_rows)
        fast = (flat, None) if flat is not None else self.validate.fast(body)
        if fast is not None:  # the common, valid request: decoded and checked in C and numpy
            matrix, given = fast
            chosen, about = (self._partition(given) if self.served_set is not None
                             else (self.model, {}))
        else:  # records, or something to name precisely (partition first, then rows)
            payload = _payload(body)
            chosen, about = (self._partition(payload.get("partition"))
                             if self.served_set is not None else (self.model, {}))
            matrix = self.validate(payload["data"])
        with warnings.catch_warnings():
            # A scikit-learn pipeline was fitted on a DataFrame; rows arrive as
            # a bare array in contract order, which is what it expects.
            warnings.simplefilter("ignore", UserWarning)
            return matrix, predictions(chosen, matrix, self.metadata.output), about

    def _partition(self, given: Any) -> tuple[Any, dict[str, Any]]:
        """The model of the request's partition, and what the answer says about it."""
        keys, served_set = self.keys, self.served_set
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


async def read_body(receive: Any, declared: bytes | None, limit: int) -> bytes:
    """The whole request body from ASGI ``receive``, refused past ``limit`` bytes.

    Raises:
        RequestError: 413 over the limit (by Content-Length before reading, or
            while reading), 499 if the client went away first.
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"request body of {declared.decode()} bytes exceeds {limit}",
                           status=413)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestError("the client closed the connection before its body arrived",
                               status=CLIENT_CLOSED)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestError(f"request body exceeds {limit} bytes", status=413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ScoreRoute:
    """Bare ASGI middleware: ``POST /score`` goes to the handler, everything else on.

    ``scope["route"]`` is set to FastAPI's /score route, so the metrics
    middleware (outside this one) counts the request under its template.
    """

    def __init__(self, app: Any, handler: ScoreHandler, route: Any):
        self.app, self.handler, self.route = app, handler, route

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/score" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        status, body, headers = await self.handler.respond(scope["headers"], receive)
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

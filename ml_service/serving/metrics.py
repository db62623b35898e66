"""The scoring service's Prometheus metrics and the middleware that counts requests."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ml_service.bundle import BundleMetadata
from ml_service.serving.scoring_log import ScoringLog

if TYPE_CHECKING:
    from ml_service.serving.model_set import ServedSet


class ServiceMetrics:
    """The service's Prometheus metrics, in a registry of its own."""

    def __init__(self, metadata: BundleMetadata):
        low, high = metadata.prediction_range
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
        # Ten equal buckets over the spec's prediction range.
        self.predictions = PredictionHistogram(np.linspace(low, high, 11))
        self.registry.register(self.predictions)
        info = Gauge(
            "scoring_model_info", "The model being served (value is always 1).",
            ["name", "version", "git_commit"], registry=self.registry,
        )
        info.labels(metadata.name, str(metadata.version), metadata.git_commit).set(1)

    def watch_cache(self, served: ServedSet) -> None:
        """Hits, misses, evictions and size of a many-models set's model cache."""
        for name, text, read in (
            ("model_cache_hits", "Requests whose partition model was in the cache.",
             lambda: served.hits),
            ("model_cache_misses", "Partition models loaded from the set's archive.",
             lambda: served.misses),
            ("model_cache_evictions", "Least recently used models dropped to stay in bounds.",
             lambda: served.evictions),
            ("model_cache_models", "Partition models held now.", lambda: len(served)),
        ):
            Gauge(name, text, registry=self.registry).set_function(read)
        Gauge("model_cache_capacity", "Most partition models held (MLOPS_MODEL_CACHE_SIZE).",
              registry=self.registry).set(served.capacity)

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


def _le(edge: float) -> str:
    """A bucket edge as prometheus_client writes it (``floatToGoString``)."""
    from prometheus_client.utils import floatToGoString

    return str(floatToGoString(edge))  # type: ignore[no-untyped-call]


class PredictionHistogram:
    """The distribution of predicted values, as a Prometheus histogram.

    A request's predictions are counted into the buckets at once with numpy
    (``observe_many``), instead of one ``Histogram.observe`` call per value,
    which cost more than the model for a 1,000-row request. Exported at
    scrape time as ``scoring_prediction_bucket``/``_sum``/``_count``.
    """

    def __init__(self, edges: np.ndarray, name: str = "scoring_prediction",
                 documentation: str = "Distribution of predicted values."):
        self.name, self.documentation = name, documentation
        self.edges = np.asarray(edges, dtype=float)
        self._edges = self.edges.tolist()
        self.counts = np.zeros(len(self.edges) + 1, dtype=np.int64)  # the last: above all
        self.total = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: np.ndarray) -> None:
        """Count ``values`` (a bucket holds the values up to its edge, Prometheus' ``le``)."""
        if len(values) <= 4:  # a few values: numpy's per-call cost is more than the work
            with self._lock:
                for value in values.tolist():
                    self.counts[bisect.bisect_left(self._edges, value)] += 1
                    self.total += value
            return
        counts = np.bincount(np.searchsorted(self.edges, values, side="left"),
                             minlength=len(self.counts))
        with self._lock:
            self.counts += counts
            self.total += float(np.sum(values))

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative, total = np.cumsum(self.counts), self.total
        buckets = [(_le(float(edge)), float(count))
                   for edge, count in zip(self.edges, cumulative[:-1])]
        buckets.append(("+Inf", float(cumulative[-1])))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets,
                                    sum_value=total)


class MetricsMiddleware:
    """Pure ASGI middleware: counts every response by route template and status."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics):
        self.app, self.metrics = app, metrics
        # The labelled children, looked up once per (route, status).
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            key = (path, status["code"])
            children = self._children.get(key)
            if children is None:
                code = str(status["code"])
                children = self._children[key] = (self.metrics.requests.labels(path, code),
                                                  self.metrics.latency.labels(path, code))
            children[0].inc()
            children[1].observe(time.perf_counter() - start)

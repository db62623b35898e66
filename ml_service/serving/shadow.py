"""Shadow scoring: production's /score requests, copied to a challenger off the
response path, and the two answers compared.

When the file ``MLOPS_SHADOW_FILE`` exists (on Kubernetes, the ConfigMap
``scoring-shadow`` that ``mlops shadow`` writes, mounted into the production
pods), it names the shadow::

    {"url": "http://10.96.0.12", "fraction": 1.0, "version": 3, "tolerance": 3.2}

and every answered request (or that fraction of them) is queued, with its
body, its credentials, its request id and production's predictions, for a
background thread that sends it to the shadow's ``/score`` and compares the
shadow's predictions with production's, row by row. The client has its
answer before any of this happens: a slow, failing or absent shadow changes
neither production's answers nor their latency, and a full queue (1,000
copies or 32 MB) drops the copy (counted), never the request. After 5 failed
copies in a row (a shadow that went away), copies are dropped for 5 s.

What the comparison gives is exported with production's metrics:

- ``scoring_shadow_requests_total{outcome}``: ``answered``, ``failed`` (an
  error status, a refused connection, a timeout) or ``dropped`` (queue full);
- ``scoring_shadow_seconds``: the shadow's latency as the mirror saw it;
- ``scoring_shadow_difference``: |shadow - production| per row, in buckets
  that are shares of the model's prediction range;
- ``scoring_shadow_rows_total{agree}``: rows within ``tolerance`` of each other.

The shadow's own pods export its prediction histogram and latency (track
``shadow``), which ``mlops shadow-report`` compares with production's.

With a scoring log (``MLOPS_SCORING_LOG_DIR``), each row the shadow answered
is also logged side by side, in files named ``shadow-*.jsonl`` beside the
scoring log's (and shipped with them): the row's inputs, production's
prediction (``production_prediction``) and the shadow's (``prediction``),
under the shadow's version and the request's id. Drift and collect read only
``scoring-*.jsonl``, so a shadow's answers never become training data.

The file is checked for changes every second; removing it stops the copies.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Sequence
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram

from ml_service.serving.metrics import PredictionHistogram
from ml_service.serving.scoring_log import Batch, ScoringLog, now_iso

logger = logging.getLogger(__name__)

#: Upper edges of the difference buckets, as shares of the prediction range.
DIFFERENCE_SHARES = (0.0, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_STOP = object()


@dataclass(frozen=True)
class Target:
    """Where the copies go, and how many."""

    url: str
    fraction: float
    version: int | None
    tolerance: float


def read_target(path: Path) -> Target | None:
    """The shadow ``path`` names, or None (no file, or a file that is not valid)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.error("shadow file %s cannot be read (%s): no shadow", path, exc.strerror)
        return None
    if not text.strip():
        return None
    try:
        data = json.loads(text)
        url = str(data["url"])
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"url must be http://host[:port], got {url[:80]!r}")
        fraction = float(data.get("fraction", 1.0))
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be above 0 and at most 1, got {fraction}")
        version = data.get("version")
        return Target(url.rstrip("/"), fraction, int(version) if version is not None else None,
                      float(data.get("tolerance", 0.0)))
    except (ValueError, KeyError, TypeError) as exc:
        logger.error("shadow file %s is not valid (%s): no shadow", path, exc)
        return None


@dataclass
class Copy:
    """A request to send to the shadow, with production's predictions."""

    body: bytes
    headers: dict[str, str]
    predictions: np.ndarray
    inputs: np.ndarray | None = None
    request_id: str = ""


class Mirror:
    """Sends copies of answered requests to the shadow ``file`` names (see the module doc).

    Args:
        file: The shadow file (``MLOPS_SHADOW_FILE``).
        registry: The service's metrics registry; the mirror's metrics join it.
        prediction_range: The model's (low, high): the difference buckets are
            shares of its width.
        max_pending: Most copies waiting; more are dropped.
        max_pending_bytes: Most bytes of bodies (and logged inputs) waiting.
        timeout: Seconds the shadow has to connect and answer a copy.
        side_by_side: Opens the side-by-side log of a shadow version (None: no log).
    """

    #: After this many failed copies in a row, copies are dropped for PAUSE seconds
    #: (a shadow that is gone must not keep the queue full).
    FAILURES_BEFORE_PAUSE = 5
    PAUSE = 5.0

    def __init__(self, file: Path, registry: CollectorRegistry,
                 prediction_range: Sequence[float], max_pending: int = 1000,
                 timeout: float = 2.0,
                 side_by_side: Callable[[int], ScoringLog] | None = None,
                 max_pending_bytes: int = 32 * 2**20):
        self.file, self.timeout, self.side_by_side = file, timeout, side_by_side
        self.log: ScoringLog | None = None
        self.max_pending_bytes = max_pending_bytes
        self._pending_bytes = 0
        self._bytes_lock = threading.Lock()
        self._failures_in_a_row = 0
        self._paused_until = 0.0
        self._stopping = threading.Event()
        self.pending: queue.Queue[object] = queue.Queue(maxsize=max_pending)
        self.requests = Counter("scoring_shadow_requests", "Copies of /score requests sent to "
                                "the shadow, by outcome (answered, failed, dropped).",
                                ["outcome"], registry=registry)
        self.seconds = Histogram("scoring_shadow_seconds", "The shadow's latency, as the "
                                 "mirror saw it.", registry=registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                          0.5, 1, 2.5))
        self.rows = Counter("scoring_shadow_rows", "Rows the shadow answered, by whether its "
                            "prediction is within the tolerance of production's.", ["agree"],
                            registry=registry)
        low, high = prediction_range
        width = (high - low) or 1.0
        self.differences = PredictionHistogram(
            np.array(DIFFERENCE_SHARES) * width, "scoring_shadow_difference",
            "|shadow - production| per row.")
        registry.register(self.differences)
        self._answered, self._failed = self.requests.labels("answered"), self.requests.labels(
            "failed")
        self._dropped = self.requests.labels("dropped")
        self._agree, self._disagree = self.rows.labels("true"), self.rows.labels("false")
        self.target: Target | None = None
        self._stamp: tuple[float, int] | None = None
        self._connection: http.client.HTTPConnection | None = None
        self._refresh()
        self._thread = threading.Thread(target=self._run, name="shadow-mirror", daemon=True)
        self._thread.start()

    def offer(self, body: bytes, headers: dict[str, str], predictions: np.ndarray,
              inputs: np.ndarray | None = None, request_id: str = "") -> None:
        """Queue a copy of an answered request (never blocks; drops when full)."""
        target = self.target
        if target is None or (target.fraction < 1 and random.random() >= target.fraction):
            return
        if self.side_by_side is None:
            inputs = None  # nothing logs them: do not hold them
        size = len(body) + (inputs.nbytes if inputs is not None else 0)
        with self._bytes_lock:
            if (self._pending_bytes + size > self.max_pending_bytes
                    or time.monotonic() < self._paused_until):
                self._dropped.inc()
                return
            self._pending_bytes += size
        try:
            self.pending.put_nowait(Copy(body, headers, predictions, inputs, request_id))
        except queue.Full:
            with self._bytes_lock:
                self._pending_bytes -= size
            self._dropped.inc()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread (copies still queued are dropped); it closes its log."""
        self._stopping.set()
        try:
            self.pending.put_nowait(_STOP)  # wakes it if it waits for a copy
        except queue.Full:
            pass
        self._thread.join(timeout)

    # -- the mirror's thread

    def _refresh(self) -> None:
        try:
            stat = self.file.stat()
            stamp: tuple[float, int] | None = (stat.st_mtime, stat.st_size)
        except OSError:
            stamp = None
        if stamp == self._stamp:
            return
        self._stamp = stamp
        target = read_target(self.file) if stamp is not None else None
        if target != self.target:
            logger.info("shadow: %s", f"copying {target.fraction:.0%} of /score requests to "
                        f"{target.url} (version {target.version})" if target else "none")
            self.target = target
            self._disconnect()
            self._open_log(target)

    def _open_log(self, target: Target | None) -> None:
        """Close the side-by-side log of the last shadow; open the new one's."""
        if self.log is not None:
            self.log.close()
            self.log = None
        if target is not None and self.side_by_side is not None:
            try:
                self.log = self.side_by_side(target.version or 0)
            except (OSError, ValueError) as exc:
                logger.error("shadow: no side-by-side log (%s)", exc)

    def _run(self) -> None:
        checked = time.monotonic()
        while not self._stopping.is_set():
            try:
                item = self.pending.get(timeout=1.0)
            except queue.Empty:
                item = None
            if isinstance(item, Copy):
                with self._bytes_lock:
                    self._pending_bytes -= len(item.body) + (
                        item.inputs.nbytes if item.inputs is not None else 0)
            try:  # nothing may end this thread but close(): copies would pile up
                if time.monotonic() - checked >= 1.0:
                    self._refresh()
                    checked = time.monotonic()
                if isinstance(item, Copy) and self.target is not None \
                        and not self._stopping.is_set():
                    self._send(self.target, item)
            except Exception:  # noqa: BLE001 - logged; the next copy gets its chance
                logger.exception("shadow: a copy could not be handled")
        self._disconnect()
        self._open_log(None)

    def _send(self, target: Target, copy: Copy) -> None:
        started = time.perf_counter()
        try:
            connection = self._connect(target)
            connection.request("POST", "/score", body=copy.body, headers=copy.headers)
            response = connection.getresponse()
            body = response.read()
            if response.getheader("connection", "").lower() == "close":
                self._disconnect()  # a draining shadow pod: the next copy reconnects
        except (OSError, http.client.HTTPException) as exc:
            self._fail()
            self._disconnect()
            logger.debug("shadow copy failed: %s", exc)
            return
        self.seconds.observe(time.perf_counter() - started)
        if response.status != 200:
            self._fail()
            return
        try:
            shadow = np.asarray(msgspec.json.decode(body)["result"], dtype=float)
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            self._failed.inc()
            return
        if shadow.shape != copy.predictions.shape:
            self._failed.inc()
            return
        self._failures_in_a_row = 0
        self._answered.inc()
        difference = np.abs(shadow - copy.predictions)
        self.differences.observe_many(difference)
        agree = int(np.count_nonzero(difference <= target.tolerance))
        self._agree.inc(agree)
        self._disagree.inc(len(difference) - agree)
        if self.log is not None and copy.inputs is not None:
            # Full: the row goes unlogged (the comparison is in the metrics already).
            self.log.submit(Batch(copy.request_id, now_iso(),
                                  np.column_stack((copy.inputs, copy.predictions)), shadow))

    def _fail(self) -> None:
        """Count a failed copy; pause copying after several in a row."""
        self._failed.inc()
        self._failures_in_a_row += 1
        if self._failures_in_a_row >= self.FAILURES_BEFORE_PAUSE:
            self._failures_in_a_row = 0
            self._paused_until = time.monotonic() + self.PAUSE
            logger.warning("shadow: %d copies failed in a row; copies are dropped for %.0f s",
                           self.FAILURES_BEFORE_PAUSE, self.PAUSE)

    def _connect(self, target: Target) -> http.client.HTTPConnection:
        if self._connection is None:
            parts = urlsplit(target.url)
            self._connection = http.client.HTTPConnection(
                parts.hostname or "", parts.port or 80, timeout=self.timeout)
        return self._connection

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

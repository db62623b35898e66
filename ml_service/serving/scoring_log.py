"""The scoring log: every scored row, written off the request path.

Requests hand a batch (request id, inputs, predictions) to a bounded queue; a
background thread formats and appends them as JSON lines to rotating files in
a directory (a volume in the containers). One line per row:

    {"request_id": ..., "row": 0, "timestamp": ..., "model_name": ...,
     "model_version": ..., "api_key": ..., "age": ..., ..., "s6": ..., "prediction": ...}

``api_key`` is the id of the API key that sent the request (see
:mod:`ml_service.serving.auth`; null when the service runs without keys).

For a many-models set, each line also names the request's partition (one
field per partition key, e.g. ``"store": 3, "product": 7``) and the
``source_version`` of the partition's model, so the log is a partitioned
dataset again: ``mlops collect`` turns it into training data per partition.

Nothing is dropped silently: when the queue is full the request is refused
with 503 (back-pressure, the client retries) and counted; on shutdown (SIGTERM
through uvicorn's lifespan) the queue is drained and the file closed.
A file is closed when it reaches its size limit or its age limit; with a
``ship_to`` URI each closed file is uploaded to object storage
(:mod:`ml_service.serving.log_shipping`). These files are what ``mlops drift`` and
``mlops collect`` read, from the volume or from the storage.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import pandas as pd

import msgspec
import numpy as np

logger = logging.getLogger(__name__)

_STOP = object()


@dataclass
class Batch:
    """One scored request, as handed to the writer."""

    request_id: str
    timestamp: str
    inputs: np.ndarray
    predictions: np.ndarray
    #: A set's request: its partition key values (in key order) and the version
    #: that trained the partition's model; empty and None for a single model.
    partition: tuple[str | int | float, ...] = ()
    source_version: int | None = None
    #: The id of the API key that sent the request (never the key); None without keys.
    api_key: str | None = None


class ScoringLog:
    """Background JSON-lines writer with bounded memory and size-based rotation.

    Args:
        directory: Where the ``scoring-*.jsonl`` files go; created if missing.
        feature_names: Column names of ``inputs``, in order.
        model_name: Recorded on every line.
        model_version: Recorded on every line.
        max_bytes: Start a new file once the current one is this large.
        max_pending: Most requests waiting to be written before back-pressure.
        ship_to: fsspec URI closed files are uploaded to (None: keep them local).
        max_age: Close a file this many seconds after it was opened, so light
            traffic still reaches the storage.
        max_total: Most bytes the directory may hold. When a new file would
            pass it, the oldest closed files are deleted (counted in
            ``files_dropped`` and logged as errors): a full disk would stop
            the service, and with shipping on only unshipped files pile up.
        partition_keys: A set's partition keys: logged on every line, with the
            ``source_version`` of the model that scored it.
        prefix: The files' names start with it: ``scoring`` (what drift and
            collect read), or ``shadow`` (a shadow's answers beside production's).

    Files are created 0600 in a 0700 directory: they hold every request.
    """

    def __init__(self, directory: Path, feature_names: list[str], model_name: str,
                 model_version: int, max_bytes: int = 64 * 2**20, max_pending: int = 2000,
                 ship_to: str | None = None, max_age: float = 3600.0,
                 max_total: int = 2**30, partition_keys: Sequence[str] = (),
                 prefix: str = "scoring"):
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self.directory.chmod(0o700)
        except PermissionError:  # a directory someone else owns: leave its mode
            logger.warning("cannot make %s private (mode 0700)", self.directory)
        self.features = list(feature_names)
        self.partition_keys = list(partition_keys)
        self.model_name, self.model_version = model_name, int(model_version)
        # One msgspec struct per line, encoded in C: about 14x faster than
        # formatting each value in Python, which matters because the writer
        # shares the GIL with the requests. Fields are renamed to the log's
        # keys, so any feature name works.
        keys = ["request_id", "row", "timestamp", "model_name", "model_version", "api_key",
                *self.partition_keys, *(["source_version"] if self.partition_keys else []),
                *self.features, "prediction"]
        types: list[Any] = [str, int, str, str, int, str | None,
                            *[str | int | float] * len(self.partition_keys),
                            *([int] if self.partition_keys else []),
                            *[float] * len(self.features), float]
        if len(set(keys)) != len(keys):
            clash = sorted({k for k in keys if keys.count(k) > 1})
            raise ValueError(f"the scoring log cannot name a column {clash} twice: a feature or "
                             "partition key uses a name the log itself writes")
        # gc=False: a line holds only strings and numbers, so it can be in no
        # reference cycle, and 1,000 GC-tracked objects per request would set
        # off collections under the GIL.
        self._line = msgspec.defstruct(
            "ScoringLogLine", [(f"f{i}", kind) for i, kind in enumerate(types)],
            rename={f"f{i}": key for i, key in enumerate(keys)}, gc=False)
        self._encoder = msgspec.json.Encoder()
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.max_total = max(max_total, 2 * max_bytes)
        self.files_dropped = 0
        self.pending: queue.Queue[Batch | object] = queue.Queue(maxsize=max_pending)
        self.rows_written = 0
        self.files_written = 0
        self._file: BinaryIO | None = None
        self._opened = 0.0
        self._size = 0
        self._kind = prefix
        self._prefix = f"{prefix}-{socket.gethostname()}-{os.getpid()}"
        self.shipper = None
        if ship_to:
            from ml_service.serving.log_shipping import Shipper

            self.shipper = Shipper(ship_to, self.directory)
            self.shipper.ship_leftovers(prefix=f"{prefix}-")
        self._thread = threading.Thread(target=self._run, name="scoring-log", daemon=True)
        self._thread.start()

    def submit(self, batch: Batch) -> bool:
        """Queue ``batch`` for writing; False if the queue is full (apply back-pressure).

        Raises:
            ValueError: If the batch's partition does not match the log's keys
                (checked here: the writer thread must never fail on a line).
        """
        if len(batch.partition) != len(self.partition_keys):
            raise ValueError(f"a batch of this log names {len(self.partition_keys)} partition "
                             f"values, not {len(batch.partition)}")
        try:
            self.pending.put_nowait(batch)
            return True
        except queue.Full:
            return False

    def depth(self) -> int:
        """Requests waiting to be written."""
        return self.pending.qsize()

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, close the file, and ship what is closed."""
        self.pending.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("scoring log did not drain in %.0fs; %d requests unwritten",
                         timeout, self.depth())
        if self.shipper is not None:
            self.shipper.close(timeout)

    # -- writer thread -------------------------------------------------------

    def _run(self) -> None:
        tick = min(self.max_age, 5.0)
        while True:
            try:
                item = self.pending.get(timeout=tick)
            except queue.Empty:
                if self._file is not None and time.monotonic() - self._opened >= self.max_age:
                    self._close_file()
                continue
            if not isinstance(item, Batch):  # _STOP
                break
            if self._file is not None and time.monotonic() - self._opened >= self.max_age:
                self._close_file()
            self._write(item)
            # Flush when the queue runs dry, not per request: cheap under load,
            # prompt when idle.
            if self.pending.empty() and self._file is not None:
                self._file.flush()
        self._close_file()

    def _write(self, batch: Batch) -> None:
        line, request_id, timestamp = self._line, batch.request_id, batch.timestamp
        name, version = self.model_name, self.model_version
        where: tuple[Any, ...] = ()
        if self.partition_keys:
            where = (*batch.partition, int(batch.source_version or 0))
        # One list per row (inputs, then the prediction): a single tolist().
        rows = np.column_stack((batch.inputs, batch.predictions)).tolist()
        key = batch.api_key
        lines = [line(request_id, row, timestamp, name, version, key, *where, *values)
                 for row, values in enumerate(rows)]
        data = self._encoder.encode_lines(lines)
        if self._file is None or self._size + len(data) > self.max_bytes and self._size:
            self._file = self._rotate()
        self._file.write(data)
        self._size += len(data)
        self.rows_written += len(lines)

    def _rotate(self) -> BinaryIO:
        self._close_file()
        self._make_room()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        path = self.directory / f"{self._prefix}-{stamp}.jsonl"
        handle = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        self._file = handle
        self._opened = time.monotonic()
        self._size = 0
        self.files_written += 1
        return handle

    def _make_room(self) -> None:
        """Delete the oldest closed files until a new full file fits under max_total."""
        files = []
        for path in self.directory.glob(f"{self._kind}-*.jsonl"):
            try:
                stat = path.stat()
            except FileNotFoundError:  # shipped meanwhile
                continue
            files.append((stat.st_mtime, path.name, path, stat.st_size))
        total = sum(size for *_, size in files)
        for _, _, path, size in sorted(files):
            if total + self.max_bytes <= self.max_total:
                break
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            total -= size
            self.files_dropped += 1
            logger.error("scoring log over %d bytes: deleted the oldest file %s (%d bytes) "
                         "unshipped", self.max_total, path.name, size)

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            if self.shipper is not None:
                # This file, and any of ours an earlier upload left behind.
                self.shipper.ship_leftovers(prefix=self._prefix)


def now_iso() -> str:
    """UTC timestamp with milliseconds, as logged."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def read_logs(location: str | Path) -> pd.DataFrame:
    """All logged rows at ``location`` as a DataFrame (pandas imported lazily).

    Args:
        location: A local directory or an fsspec URI the service ships to.

    A partly written last line (a service still running) is skipped.
    """
    import pandas as pd

    from ml_service.serving.log_shipping import log_files

    records = []
    for fs, path in log_files(str(location)):
        with fs.open(path, "rt") as handle:
            for line in handle:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    logger.warning("skipping an incomplete line in %s", path)
    return pd.DataFrame.from_records(records)

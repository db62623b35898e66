"""The scoring log: every scored row, written off the request path.

Requests hand a batch (request id, inputs, predictions) to a bounded queue; a
background thread formats and appends them as JSON lines to rotating files in
a directory (a volume in the containers). One line per row:

    {"request_id": ..., "row": 0, "timestamp": ..., "model_name": ...,
     "model_version": ..., "age": ..., ..., "s6": ..., "prediction": ...}

Nothing is dropped silently: when the queue is full the request is refused
with 503 (back-pressure, the client retries) and counted; on shutdown (SIGTERM
through uvicorn's lifespan) the queue is drained and the file closed.
These files are what ``mlops drift`` and ``mlops collect`` read.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

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


class ScoringLog:
    """Background JSON-lines writer with bounded memory and size-based rotation.

    Args:
        directory: Where the ``scoring-*.jsonl`` files go; created if missing.
        feature_names: Column names of ``inputs``, in order.
        model_name: Recorded on every line.
        model_version: Recorded on every line.
        max_bytes: Start a new file once the current one is this large.
        max_pending: Most requests waiting to be written before back-pressure.
    """

    def __init__(self, directory: Path, feature_names: list[str], model_name: str,
                 model_version: int, max_bytes: int = 64 * 2**20, max_pending: int = 2000):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.features = list(feature_names)
        # One %-template per line: several times faster than json.dumps per row,
        # which matters because the writer shares the GIL with the requests.
        # repr() of a finite float is valid JSON; NaN/inf never get this far.
        fields = ", ".join(f"{json.dumps(name)}: %r" for name in self.features)
        self._template = (
            '{"request_id": %s, "row": %d, "timestamp": "%s", '
            f'"model_name": {json.dumps(model_name)}, "model_version": {int(model_version)}, '
            f'{fields}, "prediction": %r}}\n'
        )
        self.max_bytes = max_bytes
        self.pending: queue.Queue = queue.Queue(maxsize=max_pending)
        self.rows_written = 0
        self.files_written = 0
        self._file = None
        self._size = 0
        self._prefix = f"scoring-{socket.gethostname()}-{os.getpid()}"
        self._thread = threading.Thread(target=self._run, name="scoring-log", daemon=True)
        self._thread.start()

    def submit(self, batch: Batch) -> bool:
        """Queue ``batch`` for writing; False if the queue is full (apply back-pressure)."""
        try:
            self.pending.put_nowait(batch)
            return True
        except queue.Full:
            return False

    def depth(self) -> int:
        """Requests waiting to be written."""
        return self.pending.qsize()

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, then close the file."""
        self.pending.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("scoring log did not drain in %.0fs; %d requests unwritten",
                         timeout, self.depth())

    # -- writer thread -------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self.pending.get()
            if item is _STOP:
                break
            self._write(item)
            # Flush when the queue runs dry, not per request: cheap under load,
            # prompt when idle.
            if self.pending.empty() and self._file is not None:
                self._file.flush()
        self._close_file()

    def _write(self, batch: Batch) -> None:
        request_id, stamp, template = json.dumps(batch.request_id), batch.timestamp, self._template
        lines = [
            template % (request_id, row, stamp, *values, prediction)
            for row, (values, prediction) in enumerate(
                zip(batch.inputs.tolist(), batch.predictions.tolist())
            )
        ]
        data = "".join(lines).encode()
        if self._file is None or self._size + len(data) > self.max_bytes and self._size:
            self._rotate()
        self._file.write(data)
        self._size += len(data)
        self.rows_written += len(lines)

    def _rotate(self) -> None:
        self._close_file()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        path = self.directory / f"{self._prefix}-{stamp}.jsonl"
        self._file = open(path, "ab")
        self._size = 0
        self.files_written += 1

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None


def now_iso() -> str:
    """UTC timestamp with milliseconds, as logged."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def read_logs(directory: Path):
    """All logged rows under ``directory`` as a DataFrame (pandas imported lazily).

    A partly written last line (a service still running) is skipped.
    """
    import pandas as pd

    records = []
    for path in sorted(Path(directory).glob("scoring-*.jsonl")):
        with open(path) as handle:
            for line in handle:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    logger.warning("skipping an incomplete line in %s", path)
    return pd.DataFrame.from_records(records)

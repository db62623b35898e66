"""Shipping closed scoring-log files to object storage, and reading them back.

The scoring service writes JSON-lines files to a local directory (a volume);
a closed file is uploaded to ``MLOPS_SCORING_LOG_URI`` (any fsspec URI:
``az://container/prefix`` through adlfs, ``s3://``/``gs://`` with s3fs or
gcsfs installed, or a plain directory) and deleted locally once the upload
succeeded. A file that fails to upload stays on the volume and is retried on
the next rotation and at the next start, so nothing is lost while the storage
is away. ``mlops drift`` and ``mlops collect`` read the same URI, so a
monitoring job needs no access to the serving host.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PATTERN = "scoring-*.jsonl"
_STOP = object()


def open_location(location: str) -> tuple[Any, str]:
    """(filesystem, root path) of a local directory or an fsspec URI."""
    from fsspec.core import url_to_fs

    # A fresh instance: fsspec would otherwise hand back one built earlier in
    # this process, with whatever credentials were in the environment then.
    fs, root = url_to_fs(str(location), skip_instance_cache=True)
    return fs, str(root)


class Shipper:
    """Uploads closed log files on a thread of its own, so writing never waits on the network.

    Args:
        uri: Where the files go; each keeps its name under this prefix.
        directory: The local log directory (for leftovers of earlier runs).
    """

    def __init__(self, uri: str, directory: Path):
        self.uri = uri.rstrip("/")
        self.directory = Path(directory)
        self.fs, self.root = open_location(self.uri)
        self.files_shipped = 0
        self.failures = 0
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="scoring-log-shipper", daemon=True)
        self._thread.start()

    def ship(self, path: Path) -> None:
        """Queue a closed file for upload."""
        self._queue.put(Path(path))

    def ship_leftovers(self, prefix: str = "scoring-") -> None:
        """Queue the closed files still on the volume whose names start with ``prefix``.

        At start that is every file (earlier runs of the stage); after a
        rotation, this process's own (the new one, earlier failed uploads).
        """
        for path in sorted(self.directory.glob(f"{prefix}*.jsonl")):
            self.ship(path)

    def close(self, timeout: float = 30.0) -> None:
        """Upload what is queued, then stop."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("scoring log shipping did not finish in %.0fs; files stay in %s",
                         timeout, self.directory)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            self._upload(item)

    def _upload(self, path: Path) -> None:
        if not path.exists():  # queued twice: already shipped
            return
        target = f"{self.root.rstrip('/')}/{path.name}"
        try:
            self.fs.makedirs(self.root, exist_ok=True)
            self.fs.put_file(str(path), target)
            if self.fs.size(target) != path.stat().st_size:
                raise OSError(f"{target} has {self.fs.size(target)} bytes after the upload, "
                              f"expected {path.stat().st_size}")
        except Exception as exc:  # noqa: BLE001 - any storage error: keep the file, retry later
            self.failures += 1
            logger.error("could not ship %s to %s (%s: %s); it stays on the volume and is "
                         "retried", path.name, self.uri, type(exc).__name__, exc)
            return
        path.unlink()
        self.files_shipped += 1
        logger.info("shipped %s to %s", path.name, self.uri)


def log_files(location: str) -> list[tuple[Any, str]]:
    """(filesystem, path) of every scoring-log file at ``location``, oldest name first.

    Raises:
        FileNotFoundError: If a local ``location`` is not a directory, or a
            remote one's bucket or container does not exist.
        OSError: Whatever the storage raised (unreachable, refused, no such container).
    """
    from fsspec.implementations.local import LocalFileSystem

    fs, root = open_location(location)
    if isinstance(fs, LocalFileSystem):
        if not Path(root).is_dir():
            raise FileNotFoundError(root)
    elif not fs.exists(root.split("/")[0]):  # the bucket or container
        raise FileNotFoundError(location)
    return [(fs, path) for path in sorted(fs.glob(f"{root.rstrip('/')}/{PATTERN}"))]

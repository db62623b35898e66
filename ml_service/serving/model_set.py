"""A many-models set in the scoring service: models loaded on demand into a bounded LRU cache.

The archive's SHA-256 is checked at start (as a single model file is); each
entry is checked against the set's index again when it is loaded, then
unpickled. At most ``capacity`` models are held: the least recently used is
dropped first, so memory is bounded by the cache size, not by the set's.
Hits, misses and evictions are counted for ``/metrics``.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ml_service.bundle import SET_FILE, SET_INDEX_FILE, sha256_file


class SetIntegrityError(RuntimeError):
    """The set's archive or an entry is not the one the bundle was built with."""


class UnknownPartition(LookupError):
    """The set has no model for this partition."""


class ServedSet:
    """The models of a set, by partition key, through an LRU cache of ``capacity``."""

    def __init__(self, directory: Path, expected_sha256: str, capacity: int,
                 index_sha256: str, version: int):
        for name, expected in ((SET_FILE, expected_sha256), (SET_INDEX_FILE, index_sha256)):
            actual = sha256_file(directory / name)
            if actual != expected.lower():
                raise SetIntegrityError(
                    f"{directory / name} has SHA-256 {actual}, expected {expected}: "
                    "refusing to serve a set that is not the one this bundle was built with")
        self.index: dict[str, dict[str, Any]] = json.loads(
            (directory / SET_INDEX_FILE).read_text())
        names = set(zipfile.ZipFile(directory / SET_FILE).namelist())
        missing = [k for k in self.index if f"{k}.pkl" not in names]
        if missing:
            raise SetIntegrityError(f"the set's archive lacks the models of {missing[:5]}")
        self.capacity = capacity
        self.version = version
        self._archive = zipfile.ZipFile(directory / SET_FILE)
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0

    def __len__(self) -> int:
        return len(self._cache)

    def source_version(self, key: str) -> int:
        """The version whose training produced ``key``'s model (0 in the index: this one)."""
        return int(self.index[key]["source_version"]) or self.version

    def model(self, key: str) -> Any:
        """``key``'s model, from the cache or loaded (and checked) from the archive.

        Raises:
            UnknownPartition: If the set has no such partition.
            SetIntegrityError: If the entry does not match the index.
        """
        with self._lock:
            model = self._cache.get(key)
            if model is not None:
                self._cache.move_to_end(key)
                self.hits += 1
                return model
        entry = self.index.get(key)
        if entry is None:
            raise UnknownPartition(key)
        with self._lock:  # zipfile reads are not thread-safe on one handle
            data = self._archive.read(f"{key}.pkl")
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise SetIntegrityError(f"the model of partition {key} does not match the index")
        # The bundle's signature was verified before this set was opened (load_bundle),
        # and the index it signs names this entry's hash, checked above.
        model = pickle.loads(data)  # noqa: S301 - signed bundle, entry hash-checked
        with self._lock:
            self.misses += 1
            self._cache[key] = model
            self._cache.move_to_end(key)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
                self.evictions += 1
        return model

"""The registry's write lock: one pipeline at a time gates and registers a model.

MLflow has no transactions across calls; see :meth:`RegistryLock.hold`.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ml_service.errors import TrackingError

logger = logging.getLogger(__name__)


class RegistryLock:
    """The write lock of registered model ``name``, kept in the registry itself."""

    def __init__(self, client: Any, name: str):
        self.client = client
        self.name = name

    @contextmanager
    def hold(self, timeout: float = 300.0, stale_after: float = 900.0) -> Iterator[None]:
        """Hold the registry's write lock for this model while the block runs.

        MLflow has no transactions across calls, so two pipelines gating at the
        same time could both register the same candidate or both move
        ``champion``. The lock is a registered model named ``<name>--lock``:
        creating it is atomic in every MLflow backend (a unique name), so only
        one pipeline holds it. Its tags name the holder (host, pid and a random
        nonce) and a heartbeat the holder refreshes while it runs, so a lock
        only goes stale when its holder died or hung for ``stale_after``
        seconds. Breaking a stale lock is itself elected: the one contender that
        atomically creates ``<name>--lock--break-<holder>`` may delete it, after
        checking it is still that holder's; the others wait. A holder releases
        the lock only while its tags still name it.

        Raises:
            TrackingError: If the lock is not acquired within ``timeout`` seconds.
        """
        lock_name = f"{self.name}--lock"
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        deadline = time.monotonic() + timeout
        while not self._try_create(lock_name, holder):
            tags = self._lock_tags(lock_name)
            if tags is None:
                continue  # released between our two calls: try again at once
            age = time.time() - _last_beat(tags)
            if age > stale_after:
                self._break(lock_name, tags, age)
                continue
            if time.monotonic() > deadline:
                raise TrackingError(
                    f"another pipeline ({tags.get('holder', '?')}) holds the registry lock of "
                    f"{self.name} (last heartbeat {age:.0f}s ago); try again later, or delete "
                    f"the registered model '{lock_name}' if that pipeline is gone"
                )
            time.sleep(0.2 + random.random() * 0.3)
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, name="registry-lock-heartbeat",
                                args=(lock_name, holder, max(stale_after / 4, 0.05), stop),
                                daemon=True)
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join()
            self._release(lock_name, holder)

    def _try_create(self, lock_name: str, holder: str) -> bool:
        from mlflow.exceptions import MlflowException

        now = f"{time.time():.3f}"
        try:
            self.client.create_registered_model(
                lock_name, tags={"holder": holder, "acquired": now, "heartbeat": now},
                description=f"Registration lock of {self.name}, held by a running pipeline.",
            )
            return True
        except MlflowException as exc:
            # A create that lost to an existing model answers ALREADY_EXISTS, or
            # DOES_NOT_EXIST when that model was deleted while the server looked
            # it up to say so (MLflow's SQL store): either way, not ours.
            if exc.error_code not in _LOST:
                raise
            return False

    def _lock_tags(self, lock_name: str) -> dict[str, str] | None:
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client.get_registered_model(lock_name).tags or {})
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            return None

    def _break(self, lock_name: str, stale: dict[str, str], age: float) -> None:
        """Delete a stale lock if this contender wins the election to break it."""
        from mlflow.exceptions import MlflowException

        marker = f"{lock_name}--break-{stale.get('holder', '?')}".replace(":", "-")
        try:
            self.client.create_registered_model(marker, description="Lock break marker.")
        except MlflowException as exc:
            if exc.error_code not in _LOST:
                raise
            time.sleep(0.1)  # another contender breaks it
            return
        try:
            current = self._lock_tags(lock_name)
            # Its holder is dead or hung (no heartbeat), and no other breaker
            # exists for it: between this check and the delete nobody else
            # can replace the lock.
            if current is not None and current.get("holder") == stale.get("holder"):
                logger.warning("breaking a stale registry lock held by %s (no heartbeat for "
                               "%.0fs)", stale.get("holder"), age)
                self._delete(lock_name)
        finally:
            self._delete(marker)

    def _heartbeat(self, lock_name: str, holder: str, every: float,
                   stop: threading.Event) -> None:
        from mlflow.exceptions import MlflowException

        while not stop.wait(every):
            try:
                tags = self._lock_tags(lock_name)
                if tags is None or tags.get("holder") != holder:
                    logger.error("the registry lock of %s was taken from this pipeline",
                                 self.name)
                    return
                self.client.set_registered_model_tag(lock_name, "heartbeat",
                                                     f"{time.time():.3f}")
            except MlflowException as exc:  # a blip: the next beat tries again
                logger.warning("registry lock heartbeat failed: %s", exc)

    def _release(self, lock_name: str, holder: str) -> None:
        tags = self._lock_tags(lock_name)
        if tags is not None and tags.get("holder") == holder:
            self._delete(lock_name)
        elif tags is not None:
            logger.error("not releasing the registry lock of %s: it is held by %s, not this "
                         "pipeline", self.name, tags.get("holder"))

    def _delete(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise


_LOST = ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST")


def _last_beat(tags: dict[str, str]) -> float:
    """When the holder last showed it was alive (0 if the tags say nothing)."""
    stamps = []
    for key in ("acquired", "heartbeat"):
        try:
            stamps.append(float(tags.get(key) or 0))
        except ValueError:
            stamps.append(0.0)
    return max(stamps)

"""API keys of the scoring endpoint.

A client sends a key as ``Authorization: Bearer <key>`` or ``api-key: <key>``
(the header Azure ML's managed endpoints use). Keys come from
``MLOPS_API_KEYS`` (separated by commas or new lines) and/or a file of one key
per line, ``MLOPS_API_KEYS_FILE`` (a mounted Kubernetes Secret, a Docker
volume): several are accepted at once, so a key is rotated by adding the new
one, moving the clients, then removing the old one. The file is re-read
within a second of a change, so rotation needs no restart.

A key is known by its **id**, the first 12 hex digits of its SHA-256: the
scoring log records the id of the key that sent each row, and ``mlops
collect --api-key ID`` keeps only the rows of named keys. The key itself is
never logged or printed.

The service compares SHA-256 digests (a dict lookup on a digest, not the key):
the time an answer takes says nothing about how much of a key was right.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ml_service.errors import UsageError

if TYPE_CHECKING:
    from pydantic import SecretStr

    from ml_service.settings import Settings

logger = logging.getLogger(__name__)

#: Shortest key accepted: 128 bits of a random key in base64 is 22 characters.
MIN_KEY_LENGTH = 20
#: A key: printable ASCII without spaces, commas or quotes.
_KEY = re.compile(r"[A-Za-z0-9._~+/=:@!$%^&*()\[\]{}<>?|-]+")
#: Seconds between checks of the key file for a change.
RELOAD_SECONDS = 1.0


class ApiKeyError(UsageError):
    """Keys that cannot be used (too short, malformed, a missing file)."""


def key_id(key: str) -> str:
    """The id of ``key``: the first 12 hex digits of its SHA-256 (safe to log)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def new_key() -> str:
    """A fresh random key (256 bits, URL-safe base64)."""
    return secrets.token_urlsafe(32)


def parse_keys(text: str, where: str) -> list[str]:
    """The keys in ``text``: separated by commas or new lines, ``#`` comments ignored.

    Raises:
        ApiKeyError: If a key is shorter than :data:`MIN_KEY_LENGTH` or malformed.
    """
    keys = []
    for line in text.splitlines():
        for item in line.split("#", 1)[0].split(","):
            key = item.strip()
            if not key:
                continue
            fault = (f"is too short (under {MIN_KEY_LENGTH} characters)"
                     if len(key) < MIN_KEY_LENGTH else
                     "has characters other than printable ASCII without spaces, commas and "
                     "quotes" if not _KEY.fullmatch(key) else "")
            if fault:
                raise ApiKeyError(f"{where} holds a key (id {key_id(key)}) that {fault}: "
                                  "make one with `mlops api-keys --new`")
            keys.append(key)
    return keys


class KeyRing:
    """The keys an endpoint accepts, from a value and/or a file (re-read when it changes).

    Args:
        keys: Keys as text (commas or new lines), or None.
        file: A file of keys, re-read when it changes, or None.
        what: The variable names, for errors (``MLOPS_API_KEYS``).
    """

    def __init__(self, keys: str | None, file: Path | None, what: str):
        self.what = what
        self._fixed = parse_keys(keys, what) if keys else []
        self.file = file
        self._text: bytes | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self._digests: dict[bytes, str] = {}
        if file is not None:
            try:
                self._text = file.read_bytes()
            except OSError as exc:
                raise ApiKeyError(f"{what}_FILE={file} cannot be read: {exc.strerror}") from None
            self._load(self._parse(self._text))
        else:
            self._load([])
        self._checked = time.monotonic()

    @property
    def configured(self) -> bool:
        """True when keys were configured (then a request needs one, even if the file
        is empty right now)."""
        return bool(self._fixed) or self.file is not None

    def ids(self) -> list[str]:
        """The ids of the keys accepted now."""
        self._maybe_reload()
        return sorted(set(self._digests.values()))

    def identify(self, authorization: str, api_key: str) -> str | None:
        """The id of the key a request sent, or None if it sent none that is accepted.

        Args:
            authorization: The ``Authorization`` header ("" if absent).
            api_key: The ``api-key`` header ("" if absent).
        """
        self._maybe_reload()
        presented = api_key.strip()
        if not presented and authorization:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() == "bearer":
                presented = value.strip()
        if not presented:
            return None
        return self._digests.get(hashlib.sha256(presented.encode("latin-1")).digest())

    # -- the file

    def _parse(self, text: bytes) -> list[str]:
        return parse_keys(text.decode("ascii", errors="replace"), f"{self.what}_FILE={self.file}")

    def _load(self, from_file: list[str]) -> None:
        keys = [*self._fixed, *from_file]
        self._digests = {hashlib.sha256(k.encode()).digest(): key_id(k) for k in keys}
        if self.configured and not keys:
            logger.error("%s_FILE=%s holds no key: every /score request is refused until "
                         "it does", self.what, self.file)

    def _maybe_reload(self) -> None:
        if self.file is None or time.monotonic() - self._checked < RELOAD_SECONDS:
            return
        with self._lock:
            now = time.monotonic()
            if now - self._checked < RELOAD_SECONDS:
                return
            self._checked = now
            try:
                # A few hundred bytes, read once a second: compared whole, so a change is
                # seen whatever a writer does to the file's times and inode.
                text = self.file.read_bytes()
                if text == self._text:
                    return
                keys = self._parse(text)
            except (OSError, UsageError) as exc:
                # Mid-swap, or a bad edit: the keys in force stay in force.
                logger.warning("keeping the keys in force: %s", exc)
                return
            before = set(self._digests.values())
            self._text = text
            self._load(keys)
            after = set(self._digests.values())
            logger.info("%s_FILE changed: keys %s added, %s removed", self.what,
                        sorted(after - before) or "none", sorted(before - after) or "none")


def loopback(host: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, ::1, localhost).

    A name other than ``localhost`` is not loopback, whatever it starts with.
    """
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def describe(ids: Iterable[str]) -> str:
    """``keys 1a2b3c4d5e6f, 9f8e7d6c5b4a`` for logs."""
    found = sorted(ids)
    return f"key{'s' if len(found) != 1 else ''} {', '.join(found)}" if found else "no key"


def _ring(keys: SecretStr | None, file: Path | None, what: str) -> KeyRing:
    return KeyRing(keys.get_secret_value() if keys is not None else None, file, what)


def score_keys(settings: Settings, host: str) -> KeyRing | None:
    """The keys ``/score`` requires, or None when it is open.

    Open only on a loopback address, or with ``MLOPS_ANONYMOUS_SCORING=true``;
    both are logged.

    Raises:
        ApiKeyError: Without keys on any other address, or if the keys are bad.
    """
    ring = _ring(settings.api_keys, settings.api_keys_file, "MLOPS_API_KEYS")
    if ring.configured:
        logger.info("/score requires an API key (%s accepted)", describe(ring.ids()))
        return ring
    if loopback(host):
        logger.warning("no API keys: /score is open to anyone on this machine (bound to %s "
                       "only)", host)
        return None
    if settings.anonymous_scoring:
        logger.warning("MLOPS_ANONYMOUS_SCORING=true: /score is open to anyone who reaches "
                       "%s", host)
        return None
    raise ApiKeyError(
        f"no API keys for /score, and the service would listen on {host}: anyone who reaches "
        "it could score and fill the scoring log with rows of their choosing. Set "
        "MLOPS_API_KEYS (or MLOPS_API_KEYS_FILE; `mlops api-keys --new` makes a key), or "
        "MLOPS_ANONYMOUS_SCORING=true to serve anyone on purpose")


def metrics_keys(settings: Settings) -> KeyRing | None:
    """The keys ``/metrics`` requires (``MLOPS_METRICS_KEYS``), or None when it is open."""
    ring = _ring(settings.metrics_keys, settings.metrics_keys_file, "MLOPS_METRICS_KEYS")
    return ring if ring.configured else None

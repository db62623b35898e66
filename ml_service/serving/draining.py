"""Draining: once the service is being stopped, every answer closes its connection.

A Kubernetes pod that is being replaced first runs its preStop hook (the
base Deployment's: it creates ``MLOPS_DRAIN_FILE``, then waits 15 s), is taken
out of the Service, and only then gets SIGTERM. Clients that keep their
connections alive would go on sending to it over those connections, and one
whose request crosses the server closing an idle connection at shutdown gets
a connection error. So from the moment the file exists every response says
``Connection: close``: each client's next request opens a new connection,
which the Service routes to a pod that stays, and nothing is left in flight
when the pod stops.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: How often the drain file is looked for.
POLL_SECONDS = 0.2
_CLOSE = (b"connection", b"close")


class Drain:
    """Whether the service is draining: set once ``path`` exists (see the module doc)."""

    def __init__(self, path: Path):
        self.path = path
        self.draining = path.exists()

    async def watch(self) -> None:
        """Look for the file until it appears; run as a task for the service's life."""
        while not self.draining:
            await asyncio.sleep(POLL_SECONDS)
            self.draining = self.path.exists()
        logger.info("draining (%s exists): every answer now closes its connection", self.path)


class DrainMiddleware:
    """Pure ASGI middleware: ``Connection: close`` on every response once draining."""

    def __init__(self, app: Any, drain: Drain):
        self.app, self.drain = app, drain

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.drain.draining:
            await self.app(scope, receive, send)
            return

        async def closing(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, _CLOSE]}
            await send(message)

        await self.app(scope, receive, closing)

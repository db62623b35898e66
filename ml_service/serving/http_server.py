"""Uvicorn with deadlines a public scoring service needs.

The server is uvicorn with its httptools protocol (llhttp, the HTTP parser
of Node.js, in C). Measured on the bare ASGI app of ``make bench``, server CPU
per one-row request: about 270 us with uvicorn's pure-Python h11 protocol,
about 110 us with httptools. (uvloop, 13 MB in the image, took another 30 us
off; uvicorn uses it where it is installed.)

Uvicorn closes idle keep-alive connections, but a fresh connection that sends
nothing, half a header block, or a body one byte at a time is held open as
long as the client likes; a few hundred of those exhaust the server. Here a
request must arrive whole, headers and body, within ``request_timeout``
seconds of its first chance to start (connection open, or its first bytes on
a kept-alive connection). A connection that misses it is closed; a handler
waiting for that body sees the client go (counted as 499).
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus a deadline for each whole request."""

    request_timeout = 30.0  # set per server by make_protocol()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm()  # the first bytes of the next request on a kept-alive connection

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            logger.warning("closing a connection from %s: no whole request within %.0fs",
                           self.client, self.request_timeout)
            self.transport.close()


def make_protocol(request_timeout: float) -> type[DeadlineHttpToolsProtocol]:
    """The protocol class with this server's deadline."""
    return type("DeadlineHttpToolsProtocol", (DeadlineHttpToolsProtocol,),
                {"request_timeout": request_timeout})


def run(app: Any, host: str, port: int, request_timeout: float, keep_alive: float) -> None:
    """Serve ``app`` with uvicorn, the request deadline and a keep-alive timeout."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", loop="auto",
                http=make_protocol(request_timeout), timeout_keep_alive=math.ceil(keep_alive))

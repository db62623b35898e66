"""Uvicorn with deadlines a public scoring service needs.

Uvicorn closes idle keep-alive connections, but a fresh connection that sends
nothing, half a header block, or a body one byte at a time is held open as
long as the client likes; a few hundred of those exhaust the server. Here a
request must arrive whole, headers and body, within ``request_timeout``
seconds of its first chance to start (connection open, or the previous
response). A connection that misses it is closed; a handler waiting for that
body sees the client go (counted as 499).
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for each whole request."""

    request_timeout = 30.0  # set per server by make_protocol()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        self._disarm_if_received()

    def on_response_complete(self) -> None:
        self._disarm()
        super().on_response_complete()
        self._disarm_if_received()  # a pipelined request may already be complete

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _disarm_if_received(self) -> None:
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
            self._disarm()

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


def make_protocol(request_timeout: float) -> type[DeadlineH11Protocol]:
    """The protocol class with this server's deadline."""
    return type("DeadlineH11Protocol", (DeadlineH11Protocol,),
                {"request_timeout": request_timeout})


def run(app: Any, host: str, port: int, request_timeout: float, keep_alive: float) -> None:
    """Serve ``app`` with uvicorn, the request deadline and a keep-alive timeout."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning",
                http=make_protocol(request_timeout), timeout_keep_alive=math.ceil(keep_alive))

"""The ceiling of ``make bench``: a bare ASGI app on the scoring service's own server settings.

It reads each request's body whole and answers one fixed JSON document: no
routing, parsing, validation, model or log. What it serves per second is what
the server (uvicorn with the service's HTTP protocol and timeouts) and the
load generator cost alone on this machine, so the scoring service's figures
can be given as a share of it. Started as ``python -m ml_service.bench_ceiling``
with the service's ``MLOPS_SERVE_*`` settings.
"""

from __future__ import annotations

from typing import Any

from ml_service.serving import http_server
from ml_service.settings import Settings

_ANSWER = b'{"result": [0.0], "model": {"name": "ceiling", "version": 0}}'
_HEADERS = [(b"content-type", b"application/json"),
            (b"content-length", str(len(_ANSWER)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer every HTTP request with the fixed document, after reading its body."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _ANSWER})


def main() -> None:
    """Serve :func:`app` as the scoring service would be served."""
    settings = Settings()
    http_server.run(app, settings.serve_host, settings.serve_port,
                    request_timeout=settings.request_timeout,
                    keep_alive=settings.keep_alive_timeout)


if __name__ == "__main__":
    main()

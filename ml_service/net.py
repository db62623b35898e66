"""Two network helpers every part needs: a free local port, and waiting for a server."""

from __future__ import annotations

import socket
import subprocess
import time


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_http(url: str, deadline: float,
                  process: subprocess.Popen[bytes] | None = None) -> float:
    """Poll ``url`` until it answers 200; return the seconds it took.

    Args:
        url: What to GET, e.g. ``http://127.0.0.1:8080/health``.
        deadline: Seconds to keep trying.
        process: The server's process, if this machine started it: its exit
            ends the wait at once.

    Raises:
        TimeoutError: If ``url`` does not answer 200 in time; the message has
            the last answer (an HTTP status or the connection error).
        ChildProcessError: If ``process`` exited first.
    """
    import requests

    started = time.monotonic()
    last = "no answer"
    while True:
        if process is not None and process.poll() is not None:
            raise ChildProcessError(f"the server exited with {process.returncode} before "
                                    f"{url} answered")
        try:
            response = requests.get(url, timeout=2)
            if response.status_code == 200:
                return time.monotonic() - started
            last = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        if time.monotonic() - started > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {deadline:.0f}s (last: {last})")
        time.sleep(0.2)

"""The real service (uvicorn, as the image runs it) against slow and oversized clients.

Every loop here is bounded in count and time, and only talks to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests.integration.test_serving import ROW, bundle  # noqa: F401 - fixture
from tests.servers import free_port, wait_for_http

DEADLINE = 2.0  # MLOPS_REQUEST_TIMEOUT of the server under test


@pytest.fixture(scope="module")
def server(bundle):  # noqa: F811
    directory, _ = bundle
    port = free_port()
    env = {**os.environ, "MLOPS_BUNDLE_DIR": str(directory), "MLOPS_SERVE_PORT": str(port),
           "MLOPS_SERVE_HOST": "127.0.0.1", "MLOPS_REQUEST_TIMEOUT": str(DEADLINE),
           "MLOPS_SCORING_LOG_DIR": ""}
    process = subprocess.Popen([sys.executable, "-m", "ml_service.serving"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    assert wait_for_http(f"{url}/health", process, 60), "service did not start"
    yield port, url
    process.terminate()
    process.wait(timeout=30)


def closed_after(port: int, send) -> float:
    """Seconds until the server closes a connection on which ``send(sock)`` misbehaves."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE + 5) as sock:
        stopper = threading.Event()
        writer = threading.Thread(target=send, args=(sock, stopper), daemon=True)
        writer.start()
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass
        stopper.set()
    return time.monotonic() - started


def silent(sock, stop):
    pass


def partial_headers(sock, stop):
    sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")


def trickle(sock, stop):
    """One byte every 0.5 s: each read is quick, the request never ends."""
    for byte in b"POST /score HTTP/1.1\r\nHost: x\r\n" * 4:
        if stop.wait(0.5):
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return


def partial_body(sock, stop):
    sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"data\": [[59")


def partial_second_request(sock, stop):
    """A whole request, its answer, then half a second request on the same connection:
    the deadline starts again with the second request's first bytes."""
    body = json.dumps({"data": [ROW]}).encode()
    sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    if stop.wait(0.3):
        return
    sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\n")


@pytest.mark.parametrize("client", [silent, partial_headers, trickle, partial_body,
                                    partial_second_request],
                         ids=lambda f: f.__name__)
def test_a_client_that_never_finishes_its_request_is_disconnected(server, client):
    port, _ = server
    took = closed_after(port, client)
    assert DEADLINE - 0.2 < took < DEADLINE + 2.0, f"closed after {took:.1f}s"


def test_a_kept_alive_connection_still_serves_request_after_request(server):
    _, url = server
    with requests.Session() as session:
        for _ in range(3):
            response = session.post(f"{url}/score", json={"data": [ROW]}, timeout=5)
            assert response.status_code == 200
            time.sleep(DEADLINE * 0.6)  # each request starts a fresh deadline


def oversized(port: int, stop: threading.Event, answers: list) -> None:
    """A 5 MB body of about 1.7 million empty rows, again and again."""
    body = b'{"data": [' + b"[]," * 1_700_000 + b"[]]}"
    body = body[: 5_000_000 - 3] + b"]]}"
    for _ in range(200):
        if stop.is_set():
            return
        try:
            response = requests.post(f"http://127.0.0.1:{port}/score", data=body, timeout=10,
                                     headers={"Content-Type": "application/json"})
            answers.append(response.status_code)
        except requests.RequestException as exc:
            answers.append(type(exc).__name__)


def test_health_answers_within_a_second_under_eight_hostile_clients(server):
    """4 clients flood oversized bodies, 4 hold connections open sending next to nothing."""
    port, url = server
    stop, answers, threads = threading.Event(), [], []
    for _ in range(4):
        threads.append(threading.Thread(target=oversized, args=(port, stop, answers),
                                        daemon=True))
    for misbehave in (silent, partial_headers, trickle, partial_body):
        threads.append(threading.Thread(target=closed_after, args=(port, misbehave),
                                        daemon=True))
    for thread in threads:
        thread.start()
    latencies = []
    try:
        time.sleep(0.5)
        until = time.monotonic() + 8
        while time.monotonic() < until and len(latencies) < 80:
            started = time.monotonic()
            assert requests.get(f"{url}/health", timeout=5).status_code == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    print(f"/health x{len(latencies)}: median {sorted(latencies)[len(latencies) // 2]:.3f}s, "
          f"max {max(latencies):.3f}s; {len(answers)} oversized bodies answered 413")
    assert answers and set(answers) == {413}, set(answers)
    assert max(latencies) < 1.0, f"slowest /health {max(latencies):.2f}s"


@pytest.mark.parametrize("bundle", ["onnx"], indirect=True)  # the runtime plays no part
def test_a_draining_service_closes_each_kept_connection_after_its_answer(
        bundle, tmp_path):  # noqa: F811
    """Clients that keep their connections are told to reconnect once the pod drains.

    Before the drain file exists, one connection carries every request; from
    the moment it does, each answer says ``Connection: close`` and the server
    closes the connection after it (the preStop hook of the base Deployment).
    """
    import http.client

    directory, _ = bundle
    port, drain = free_port(), tmp_path / "draining"
    env = {**os.environ, "MLOPS_BUNDLE_DIR": str(directory), "MLOPS_SERVE_PORT": str(port),
           "MLOPS_SERVE_HOST": "127.0.0.1", "MLOPS_SCORING_LOG_DIR": "",
           "MLOPS_DRAIN_FILE": str(drain)}
    process = subprocess.Popen([sys.executable, "-m", "ml_service.serving"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/health", process, 60)
        body = json.dumps({"data": [ROW]})
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        answers = []
        for _ in range(5):  # kept alive: the same socket every time
            connection.request("POST", "/score", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            answers.append((response.status, response.getheader("connection")))
        assert answers == [(200, None)] * 5
        drain.touch()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            connection.request("POST", "/score", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            if response.getheader("connection") == "close":
                break
            time.sleep(0.05)
        assert response.getheader("connection") == "close"
        # The server closes its end after the answer: a raw HTTP/1.1 request (kept
        # alive by default) reads to end-of-file, well before the socket's timeout.
        request = (f"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n{body}").encode()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(request)
            received = b""
            while chunk := raw.recv(65536):
                received += chunk
        assert received.startswith(b"HTTP/1.1 200") and b"connection: close" in received
        health = requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert health.status_code == 200 and health.headers["connection"] == "close"
    finally:
        process.terminate()
        process.wait(timeout=30)

"""Both of the agent's HTTP protocols (app/api/http_protocol.py) answer a request they
cannot parse with the agent's JSON 400: the httptools one the agent runs with, and the
h11 one it falls back to where httptools is not installed."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from app.api._httptools_protocol import JsonErrorHttpToolsProtocol
from app.api.http_protocol import JsonErrorH11Protocol, protocol_class
from app.services.model_service.reference import free_loopback_port


async def _ok(scope: dict, receive: object, send: object) -> None:  # a minimal ASGI app
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 204, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]


@pytest.fixture(params=[JsonErrorHttpToolsProtocol, JsonErrorH11Protocol], ids=["httptools", "h11"])
def server_port(request: pytest.FixtureRequest) -> Iterator[int]:
    port = free_loopback_port()
    config = uvicorn.Config(
        _ok, host="127.0.0.1", port=port, http=request.param, log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def test_the_agent_serves_with_the_httptools_protocol_when_it_is_installed() -> None:
    assert protocol_class() is JsonErrorHttpToolsProtocol


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\nNo colon here\r\n\r\n",
        b"THIS IS NOT HTTP\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nIdempotency-Key: a\x00b\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1" + b"0" * 30 + b"\r\n\r\n",
    ],
    ids=["header-without-colon", "garbage-request-line", "nul-in-header", "length-10e30"],
)
def test_an_unparsable_request_gets_the_json_400(server_port: int, request_bytes: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server_port), timeout=10) as sock:
        sock.sendall(request_bytes)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body)["error"] == "bad_request"
    assert int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]) == len(body)


def test_a_good_request_is_served_as_before(server_port: int) -> None:
    with socket.create_connection(("127.0.0.1", server_port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 204")

"""Both of the agent's HTTP protocols (app/api/http_protocol.py), the httptools one the
agent runs with and the h11 one it falls back to where httptools is not installed, over
real sockets: a request they cannot parse, or that breaks a bound (head size, Host, rate),
gets the agent's JSON error, and nothing a client sends is read without a bound."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from app.api._httptools_protocol import JsonErrorHttpToolsProtocol
from app.api.http_protocol import (
    AgentServerConfig,
    JsonErrorH11Protocol,
    RequestLimits,
    protocol_class,
)
from app.config import Settings
from app.services.model_service.reference import free_loopback_port
from tests.support import raw_exchange, trickle

# Short bounds, so that the tests of the rate take seconds.
LIMITS = RequestLimits(max_head_bytes=16 * 1024, min_rate_bytes_per_s=1024, grace_s=1.0)


async def _echo_length(scope: dict, receive: object, send: object) -> None:
    """A minimal ASGI app: reads the whole body (after 3 s on /busy, as an application busy
    with something else would) and answers 200 with its length."""
    assert scope["type"] == "http"
    if scope["path"] == "/busy":
        await asyncio.sleep(3)
    size = 0
    while True:
        message = await receive()  # type: ignore[operator]
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": body})  # type: ignore[operator]


PROTOCOLS = [JsonErrorHttpToolsProtocol, JsonErrorH11Protocol]


@contextlib.contextmanager
def _serve(protocol: type, limits: RequestLimits) -> Iterator[int]:
    """`_echo_length` served with `protocol` and `limits` on a free loopback port."""
    port = free_loopback_port()
    config = AgentServerConfig(
        _echo_length,
        limits,
        host="127.0.0.1",
        port=port,
        http=protocol,
        log_config=None,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(params=PROTOCOLS, ids=["httptools", "h11"])
def server_port(request: pytest.FixtureRequest) -> Iterator[int]:
    with _serve(request.param, LIMITS) as port:
        yield port


def _assert_json_error(head: bytes, body: bytes, status: int, error: str) -> dict:
    assert head.startswith(b"HTTP/1.1 %d" % status), head
    assert b"content-type: application/json" in head.lower()
    assert int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]) == len(body)
    parsed = json.loads(body)
    assert parsed["error"] == error
    return dict(parsed)


def test_the_agent_serves_with_the_httptools_protocol_when_it_is_installed() -> None:
    assert protocol_class() is JsonErrorHttpToolsProtocol


def test_the_limits_are_the_settings() -> None:
    settings = Settings(request_head_max_kb=8, request_min_rate_kb_s=2, request_grace_s=5)
    config = AgentServerConfig(_echo_length, RequestLimits.from_settings(settings))
    assert config.request_limits == RequestLimits(8192, 2048, 5.0)
    assert config.h11_max_incomplete_event_size == 8192
    assert config.http is JsonErrorHttpToolsProtocol


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
    head, body = raw_exchange(server_port, request_bytes)
    _assert_json_error(head, body, 400, "bad_request")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nab",
    ],
    ids=["no-host", "two-hosts", "post-without-host"],
)
def test_an_http_1_1_request_without_one_host_gets_the_json_400(
    server_port: int, request_bytes: bytes
) -> None:
    """RFC 9112 section 3.2: a server MUST answer 400 to an HTTP/1.1 request without a
    Host header, or with more than one."""
    head, body = raw_exchange(server_port, request_bytes)
    error = _assert_json_error(head, body, 400, "bad_request")
    assert "Host" in error["detail"]


def test_an_http_1_0_request_needs_no_host(server_port: int) -> None:
    head, body = raw_exchange(server_port, b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert body == b"3"


@pytest.mark.parametrize(
    "shape",
    ["one-long-header", "many-headers", "long-request-line"],
)
def test_a_head_over_the_bound_is_answered_431_before_it_is_read_whole(
    server_port: int, shape: str
) -> None:
    """A 64 MB head, streamed: the 431 arrives while the client is still sending (the
    agent parsed at most REQUEST_HEAD_MAX_KB of it), and the client reads the answer
    rather than a connection reset."""
    total = 64 * 1024 * 1024
    chunk = {
        "one-long-header": b"a" * 65536,
        "many-headers": b"X-Line: 1\r\n" * 5958,
        "long-request-line": b"b" * 65536,
    }[shape]
    start = {
        "one-long-header": b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ",
        "many-headers": b"GET / HTTP/1.1\r\nHost: a\r\n",
        "long-request-line": b"GET /",
    }[shape]
    sent = 0
    sent_when_answered: list[int] = []
    with socket.create_connection(("127.0.0.1", server_port), timeout=20) as sock:

        def send_all() -> None:
            nonlocal sent
            try:
                sock.sendall(start)
                while sent < total:
                    sock.sendall(chunk)
                    sent += len(chunk)
            except OSError:  # the agent closed after its answer: expected
                pass

        sender = threading.Thread(target=send_all, daemon=True)
        sender.start()
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < 50:
            piece = sock.recv(65536)
            if not sent_when_answered:
                sent_when_answered.append(sent)
            if not piece:
                break
            answer += piece
        sender.join(timeout=20)
    head, _, body = answer.partition(b"\r\n\r\n")
    body = body[: int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])]
    error = _assert_json_error(head, body, 431, "request_header_too_large")
    assert "REQUEST_HEAD_MAX_KB" in error["detail"]
    assert sent_when_answered[0] < total // 4


def test_a_request_within_the_head_bound_is_served(server_port: int) -> None:
    headers = b"".join(b"X-Line-%d: %s\r\n" % (i, b"v" * 100) for i in range(100))  # ~11 KB
    head, body = raw_exchange(
        server_port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + headers + b"\r\n"
    )
    assert head.startswith(b"HTTP/1.1 200"), head
    assert body == b"0"


def test_pipelined_requests_longer_together_than_the_head_bound_are_served(
    server_port: int,
) -> None:
    """2,000 small requests in one write (54 KB, over the 16 KB head bound): each head is
    counted on its own, every request is answered."""
    one = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    last = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server_port), timeout=20) as sock:
        sock.sendall(one * 1999 + last)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.count(b"HTTP/1.1 200 OK") == 2000
    assert b"HTTP/1.1 431" not in answer


@pytest.mark.parametrize(
    "head",
    [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ",
    ],
    ids=["body", "chunked-body", "header"],
)
def test_a_request_trickled_at_1_byte_per_second_is_answered_408(
    server_port: int, head: bytes
) -> None:
    """With a grace of 1 s and 1 KB/s, a 1 byte/s request is answered 408 after about
    1 s (the idle timeout alone would never fire: a byte comes every second)."""
    took_s, answer = trickle(server_port, head, pace_s=1.0, limit_s=8)
    head_part, _, body = answer.partition(b"\r\n\r\n")
    error = _assert_json_error(head_part, body, 408, "request_timeout")
    assert "REQUEST_MIN_RATE_KB_S" in error["detail"]
    assert took_s < 4


def test_a_connection_that_sends_nothing_is_closed_after_the_grace(server_port: int) -> None:
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", server_port), timeout=10) as sock:
        assert sock.recv(100) == b""
    assert time.monotonic() - began < 4


def test_a_request_at_a_fair_rate_may_take_longer_than_the_grace(server_port: int) -> None:
    """40 KB at about 10 KB/s (ten times the minimum): 4 s, four times the grace."""
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", server_port), timeout=20) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 40960\r\n\r\n")
        for _ in range(40):
            sock.sendall(b"x" * 1024)
            time.sleep(0.1)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert answer.endswith(b"40960")
    assert time.monotonic() - began > 3


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=["httptools", "h11"])
def test_time_the_application_is_not_reading_is_not_the_clients(protocol: type) -> None:
    """At 8 MB/s minimum and 1 s of grace, the application waits 3 s before it reads a
    2 MB body: the agent stops reading meanwhile (uvicorn's flow control), and that time
    is not counted against the client, who sent everything at once."""
    limits = RequestLimits(max_head_bytes=16 * 1024, min_rate_bytes_per_s=8 * 2**20, grace_s=1)
    with (
        _serve(protocol, limits) as port,
        socket.create_connection(("127.0.0.1", port), timeout=20) as sock,
    ):
        sock.sendall(b"POST /busy HTTP/1.1\r\nHost: a\r\nContent-Length: 2097152\r\n\r\n")
        sock.sendall(b"x" * 2097152)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert answer.endswith(b"2097152")


def test_a_client_waiting_for_100_continue_is_not_blamed(server_port: int) -> None:
    """`Expect: 100-continue`: the client sends its body only once the application asks
    for it (here after 3 s, three times the grace); that wait is the agent's."""
    with socket.create_connection(("127.0.0.1", server_port), timeout=20) as sock:
        sock.sendall(
            b"POST /busy HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 100")
        sock.sendall(b"hello")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert answer.endswith(b"5")


def test_a_good_request_is_served_as_before(server_port: int) -> None:
    head, body = raw_exchange(
        server_port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b"0"

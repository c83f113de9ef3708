"""What both of the agent's HTTP/1.1 protocols (httptools and h11, `app.api.http_protocol`)
add to uvicorn's: bounds on every byte a client sends before the application sees it, and
the agent's JSON error for every answer uvicorn would write itself.

- **Head size**: the request line and headers may hold at most `max_head_bytes`; bytes
  are handed to the parser only up to that bound, so an over-long head is answered 431
  after at most that many bytes, never read (or buffered) whole.
- **Rate**: from the first byte of a request to its last, the client must keep up at least
  `min_rate_bytes_per_s` after a grace of `grace_s` seconds: the request may take
  `grace_s + bytes_received / min_rate_bytes_per_s` seconds of the time the agent was
  reading (Apache's mod_reqtimeout rule, "MinRate": each byte received buys the client
  more time). Time the agent itself is not reading (the application is busy with the
  bytes it has, uvicorn paused reading; or the client waits for the `100 Continue` it
  asked for) does not count. A request too slow is answered
  408 (or, once its answer has begun, its connection is closed); a connection that sends
  nothing at all for `grace_s` is closed without an answer.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.utils import fastjson

if TYPE_CHECKING:
    from app.config import Settings

logger = logging.getLogger("app.http")

UNPARSABLE_REQUEST_DETAIL = (
    "the agent could not read this HTTP request (a malformed request line or header, e.g."
    " a control character in a header value, a missing Host header, or a broken body); fix"
    " the client and send it again"
)
REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
}
# Defaults of the settings REQUEST_HEAD_MAX_KB, REQUEST_MIN_RATE_KB_S, REQUEST_GRACE_S.
DEFAULT_HEAD_MAX_BYTES = 64 * 1024
DEFAULT_MIN_RATE_BYTES_PER_S = 16 * 1024
DEFAULT_GRACE_S = 30.0
# After a refusal, how long the rest of the request is read and dropped, seconds.
LINGER_S = 2.0


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on what a client sends (see the module docstring).

    Attributes:
        max_head_bytes: the longest request line + headers, bytes.
        min_rate_bytes_per_s: the slowest a request may arrive after the grace, bytes/s.
        grace_s: the time every request gets before its rate counts, seconds.
    """

    max_head_bytes: int = DEFAULT_HEAD_MAX_BYTES
    min_rate_bytes_per_s: float = DEFAULT_MIN_RATE_BYTES_PER_S
    grace_s: float = DEFAULT_GRACE_S

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestLimits:
        """The limits REQUEST_HEAD_MAX_KB, REQUEST_MIN_RATE_KB_S and REQUEST_GRACE_S set."""
        return cls(
            max_head_bytes=int(settings.request_head_max_kb * 1024),
            min_rate_bytes_per_s=settings.request_min_rate_kb_s * 1024,
            grace_s=settings.request_grace_s,
        )

    @property
    def tick_s(self) -> float:
        """How often a connection's rate is checked, seconds (a quarter of the grace, at
        most 1 s)."""
        return max(0.05, min(1.0, self.grace_s / 4))


def error_body(error: str, detail: str) -> bytes:
    """The agent's JSON error body (UTF-8 bytes). No `request_id`: the request was never
    handed to the application, so it has none."""
    return fastjson.dumps({"error": error, "detail": detail})


def unparsable_request_body() -> bytes:
    """The JSON body of the 400 for a request that cannot be parsed (UTF-8 bytes)."""
    return error_body("bad_request", UNPARSABLE_REQUEST_DETAIL)


def error_response(status: int, body: bytes, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP/1.1 answer with a JSON `body` that closes the connection (bytes)."""
    content = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS[status])]
    for name, value in default_headers:
        content.extend([name, b": ", value, b"\r\n"])
    content.extend(
        [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n",
            b"\r\n",
            body,
        ]
    )
    return b"".join(content)


class RequestGuard:
    """Head-size and rate bounds for a uvicorn HTTP protocol (mixed in before it).

    The protocol calls `_guard_feed(data, feed)` in `data_received`, and tells the guard
    where the request stands (their parsers differ): `_head_complete()`, and
    `_request_begins()` / `_request_read()` as a request starts and ends.
    """

    # Set by uvicorn's protocols.
    config: Any
    server_state: Any
    transport: asyncio.Transport
    flow: Any
    loop: asyncio.AbstractEventLoop
    cycle: Any

    _limits: RequestLimits
    _reading: bool
    _request_bytes: int
    _head_bytes: int
    _waited_s: float
    _last_tick: float
    _timer: asyncio.TimerHandle | None
    _discarding: bool

    # What the parser knows; each protocol answers from its own parser.
    def _head_complete(self) -> bool:
        raise NotImplementedError

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard_init()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start as uvicorn does; the first request's clock starts now."""
        super().connection_made(transport)  # type: ignore[misc]
        self._request_begins()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the rate clock; then as uvicorn does."""
        self._guard_stop()
        super().connection_lost(exc)  # type: ignore[misc]

    def _guard_init(self) -> None:
        limits = getattr(self.config, "request_limits", None)
        self._limits = limits if isinstance(limits, RequestLimits) else RequestLimits()
        self._reading = False
        self._request_bytes = 0
        self._head_bytes = 0
        self._waited_s = 0.0
        self._last_tick = 0.0
        self._timer = None
        self._discarding = False

    def _request_begins(self) -> None:
        """A request (or, on a new connection, the wait for one) begins: its clock starts."""
        if self._reading:
            return
        self._reading = True
        self._request_bytes = 0
        self._head_bytes = 0
        self._waited_s = 0.0
        self._last_tick = self.loop.time()
        if self._timer is None:
            self._timer = self.loop.call_later(self._limits.tick_s, self._tick)

    def _request_read(self) -> None:
        """The whole request has arrived: its clock stops."""
        self._reading = False
        self._head_bytes = 0

    def _guard_stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _guard_feed(self, data: bytes, feed: Any) -> None:
        """Hand `data` to `feed` (the parser), never more of a request's head than the
        bound allows (in slices while a head is incomplete: a slice may also finish the
        request and begin the next one, pipelined, whose count then starts afresh)."""
        if self._discarding:
            return
        self._request_begins()
        self._request_bytes += len(data)
        while data:
            if self._head_complete():
                feed(data)
                return
            room = self._limits.max_head_bytes - self._head_bytes
            if room <= 0:
                self._refuse(
                    431,
                    "request_header_too_large",
                    "the request line and headers are longer than"
                    f" {self._limits.max_head_bytes} bytes (REQUEST_HEAD_MAX_KB); send fewer"
                    " or shorter headers",
                )
                return
            piece, data = data[:room], data[room:]
            self._head_bytes += len(piece)
            feed(piece)
            if self._discarding or self.transport.is_closing():
                return

    def _tick(self) -> None:
        self._timer = None
        if not self._reading or self.transport.is_closing():
            return
        now = self.loop.time()
        if not self._agent_holds_back():  # the agent was reading: the client's time
            self._waited_s += now - self._last_tick
        self._last_tick = now
        allowed_s = self._limits.grace_s + self._request_bytes / self._limits.min_rate_bytes_per_s
        if self._waited_s <= allowed_s:
            self._timer = self.loop.call_later(self._limits.tick_s, self._tick)
            return
        if self._request_bytes == 0:  # an idle connection, no request begun: just close it
            self.transport.close()
            return
        self._refuse(
            408,
            "request_timeout",
            f"the request arrived too slowly: {self._request_bytes} bytes in"
            f" {self._waited_s:.0f} s, below {self._limits.min_rate_bytes_per_s / 1024:g} KB/s"
            f" after a grace of {self._limits.grace_s:g} s (REQUEST_MIN_RATE_KB_S,"
            " REQUEST_GRACE_S); nothing was kept, send it again on a faster connection",
        )

    def _agent_holds_back(self) -> bool:
        """Whether the client waits for the agent: uvicorn paused reading (the application
        is busy with what it has), or the client asked `Expect: 100-continue` and the
        application has not yet asked for the body (RFC 9110 section 10.1.1)."""
        if self.flow.read_paused:
            return True
        cycle = self.cycle if self._head_complete() else None
        return bool(cycle is not None and cycle.waiting_for_100_continue)

    def _refuse(self, status: int, error: str, detail: str) -> None:
        """Answer `status` with the JSON error and close, or only close when this request's
        answer has already begun; the application (if running) sees a disconnect."""
        client = getattr(self, "client", None)
        logger.warning("request refused (%d %s) from %s: %s", status, error, client, detail)
        cycle = self.cycle if self._head_complete() else None
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        if cycle is not None and cycle.response_started:
            self.transport.close()
            return
        body = error_body(error, detail)
        self.transport.write(error_response(status, body, self.server_state.default_headers))
        self._linger()

    def send_400_response(self, msg: str) -> None:
        """Answer a request the parser refused with the agent's JSON 400 and close (`msg`,
        uvicorn's plain text, is logged by uvicorn already); nothing when this connection
        has been answered already."""
        if self._discarding or self.transport.is_closing():
            return
        body = unparsable_request_body()
        self.transport.write(error_response(400, body, self.server_state.default_headers))
        self._linger()

    def _linger(self) -> None:
        """Close after an answer the client may still be sending into: end our side now,
        then read and drop what still comes for at most `LINGER_S` seconds, so that the
        client reads the answer instead of a connection reset (closing a socket with unread
        bytes resets it); nginx's "lingering close"."""
        self._discarding = True
        self._guard_stop()
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

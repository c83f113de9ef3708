"""The HTTP/1.1 protocol the agent is served with: uvicorn's own, plus bounds on what a
client may send before the application sees it, and the agent's JSON error for every
answer uvicorn would otherwise write itself (`app.api._protocol_guard`):

- a request line and headers over REQUEST_HEAD_MAX_KB: 431, after at most that many bytes;
- a request (head and body) arriving slower than REQUEST_MIN_RATE_KB_S after a grace of
  REQUEST_GRACE_S: 408;
- an HTTP/1.1 request without exactly one Host header (RFC 9112 section 3.2): 400;
- a request it cannot parse (a malformed request line, a control character in a header
  value, a broken chunked body): 400 with the agent's JSON error instead of uvicorn's
  plain-text "Invalid HTTP request received.".

`AgentServerConfig` is uvicorn's `Config` with these limits and `protocol_class()`, which
picks the httptools-based protocol when httptools is installed (as uvicorn's `auto`
does), else the h11-based one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.api._protocol_guard import (
    RequestGuard,
    RequestLimits,
    unparsable_request_body,
)

__all__ = [
    "AgentServerConfig",
    "JsonErrorH11Protocol",
    "RequestLimits",
    "protocol_class",
    "unparsable_request_body",
]


class JsonErrorH11Protocol(RequestGuard, H11Protocol):
    """uvicorn's h11 protocol, bounded (head size, rate), with a JSON 400 for a request it
    cannot parse (h11 itself refuses an HTTP/1.1 request without a Host header)."""

    def _head_complete(self) -> bool:
        return self.conn.their_state is not h11.IDLE

    def data_received(self, data: bytes) -> None:
        """Parse `data` as uvicorn does, within the head-size bound; the rate clock stops
        once the request has arrived whole."""
        self._guard_feed(data, super().data_received)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._request_read()


def protocol_class() -> type[asyncio.Protocol]:
    """The protocol class for `uvicorn.Config(http=...)`: httptools-based when httptools is
    installed (faster; what uvicorn's `auto` would pick), else h11-based."""
    try:
        from app.api._httptools_protocol import JsonErrorHttpToolsProtocol
    except ImportError:  # httptools is optional in uvicorn
        return JsonErrorH11Protocol
    return JsonErrorHttpToolsProtocol


class AgentServerConfig(uvicorn.Config):
    """uvicorn's `Config` for serving the agent: its protocol (`protocol_class()` unless
    `http` is given) with `limits` (module-level, so uvicorn can pickle it to worker
    processes)."""

    def __init__(self, app: Any, limits: RequestLimits | None = None, **kwargs: Any) -> None:
        self.request_limits = limits or RequestLimits()
        kwargs.setdefault("http", protocol_class())
        kwargs.setdefault("h11_max_incomplete_event_size", self.request_limits.max_head_bytes)
        super().__init__(app, **kwargs)

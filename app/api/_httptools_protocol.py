"""uvicorn's httptools protocol with the agent's bounds and JSON errors (see
`app.api._protocol_guard`); a module of its own because importing it needs httptools,
which uvicorn treats as optional."""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.api._protocol_guard import RequestGuard

MISSING_HOST_DETAIL = (
    "an HTTP/1.1 request must carry exactly one Host header (RFC 9112 section 3.2); fix the"
    " client and send it again"
)


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request already answered."""


class JsonErrorHttpToolsProtocol(RequestGuard, HttpToolsProtocol):
    """uvicorn's httptools protocol, bounded (head size, rate), that refuses an HTTP/1.1
    request without exactly one Host header, and answers a request it cannot parse with
    the agent's JSON 400."""

    _head_done = False  # the current request's line and headers are parsed

    def _head_complete(self) -> bool:
        return self._head_done

    def data_received(self, data: bytes) -> None:
        """Parse `data` as uvicorn does, within the head-size bound."""
        self._guard_feed(data, super().data_received)

    def on_message_begin(self) -> None:
        """A request begins (also one pipelined behind another)."""
        self._head_done = False
        self._request_begins()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        """Refuse an HTTP/1.1 request without exactly one Host; else as uvicorn does."""
        hosts = sum(1 for name, _ in self.headers if name == b"host")
        if self.parser.get_http_version() == "1.1" and hosts != 1:
            self._refuse(400, "bad_request", MISSING_HOST_DETAIL)
            raise _Refused
        self._head_done = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The request has arrived whole: as uvicorn does, and its rate clock stops."""
        super().on_message_complete()
        self._request_read()

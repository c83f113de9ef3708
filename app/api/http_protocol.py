"""The HTTP/1.1 protocol the agent is served with: uvicorn's own, except for the one answer
uvicorn writes itself, without the application. A request it cannot parse (a malformed
request line, a control character in a header value, a broken chunked body) gets a 400
whose body is the agent's JSON error, like every other error, instead of uvicorn's
plain-text "Invalid HTTP request received.".

`protocol_class()` picks the httptools-based protocol when httptools is installed (as
uvicorn's `auto` does), else the h11-based one.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.utils import fastjson

UNPARSABLE_REQUEST_DETAIL = (
    "the agent could not read this HTTP request (a malformed request line or header, e.g."
    " a control character in a header value, or a broken body); fix the client and send"
    " it again"
)


def unparsable_request_body() -> bytes:
    """The JSON body of the 400 for a request that cannot be parsed (UTF-8 bytes).

    No `request_id`: the request was never read, so it has none.
    """
    return fastjson.dumps({"error": "bad_request", "detail": UNPARSABLE_REQUEST_DETAIL})


class JsonErrorH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a JSON 400 for a request it cannot parse."""

    def send_400_response(self, msg: str) -> None:
        """Answer 400 with the agent's JSON error and close (`msg`, uvicorn's plain text,
        is logged by uvicorn already)."""
        body = unparsable_request_body()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def protocol_class() -> type[asyncio.Protocol]:
    """The protocol class for `uvicorn.Config(http=...)`: httptools-based when httptools is
    installed (faster; what uvicorn's `auto` would pick), else h11-based."""
    try:
        from app.api._httptools_protocol import JsonErrorHttpToolsProtocol
    except ImportError:  # httptools is optional in uvicorn
        return JsonErrorH11Protocol
    return JsonErrorHttpToolsProtocol

"""What every answer gets, and the last line of defence: every answer is JSON, even a crash's.

`RequestContextMiddleware` gives each request an id (the client's `X-Request-ID` when
it is sane, else a new one), returns it in the `X-Request-ID` header, tags every log
line with it, adds the security headers (CSP, nosniff, no framing, referrer policy),
logs one line per request (method, path, status, seconds), and turns an exception no
handler took into a JSON 500 whose `request_id` finds the traceback in `error.log`.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.utils.logging import request_id_var

logger = logging.getLogger("app.errors")
request_logger = logging.getLogger("app.requests")

# Only the agent's own origin (data:/blob: for Bootstrap's icons and local previews); no
# inline script or style element anywhere, so injected markup cannot run (OWASP CSP).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]

REQUEST_ID_HEADER = "X-Request-ID"
# A client's own id is reused only when it is short and plain (it goes into logs).
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


def current_request_id() -> str | None:
    """The id of the request being served, or None outside a request."""
    return request_id_var.get()


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _SANE_REQUEST_ID.match(text) else None
    return None


class RequestContextMiddleware:
    """Request id, security headers and request log line for every answer; unexpected
    exceptions answered with a JSON 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        began = time.perf_counter()
        started = False
        status_code = 500

        async def send_with_id(message: Message) -> None:
            nonlocal started, status_code
            if message["type"] == "http.response.start":
                started = True
                status_code = message["status"]
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
                ]
                present = {name.lower() for name, _ in headers}
                headers.extend((n, v) for n, v in SECURITY_HEADERS if n not in present)
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception(
                "unexpected error",
                extra={"method": scope.get("method"), "path": scope.get("path")},
            )
            if started:  # too late for a JSON answer: let the server close the connection
                raise
            body = json.dumps(
                {
                    "error": "internal_error",
                    "detail": (
                        "the agent hit an unexpected error while answering this request; it"
                        f" is logged in error.log under request id {request_id}. Try again,"
                        " and report the request id if it happens again"
                    ),
                    "request_id": request_id,
                }
            ).encode("utf-8")
            await send_with_id(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode("ascii")),
                    ],
                }
            )
            await send_with_id({"type": "http.response.body", "body": body})
        finally:
            request_logger.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status_code,
                    "duration_s": round(time.perf_counter() - began, 4),
                },
            )
            request_id_var.reset(token)


class RequestBodyLimitMiddleware:
    """Bounds the body of every request but the uploads (whose receiver bounds theirs by
    MAX_BATCH_SIZE x MAX_FILE_SIZE_MB) to `max_bytes`: a declared Content-Length over it is
    answered 413 before the application runs; a body that grows over it while streamed
    (chunked) ends the read with a 413 (`request_too_large`, JSON either way)."""

    def __init__(self, app: ASGIApp, max_bytes: int, exempt_paths: frozenset[str]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt_paths = exempt_paths

    def _detail(self) -> str:
        return (
            f"the request body is larger than {self.max_bytes // 1024} KB"
            " (MAX_REQUEST_BODY_KB); send a smaller one (images go to the upload routes,"
            " which take MAX_FILE_SIZE_MB each)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            error = {
                "error": "request_too_large",
                "detail": self._detail(),
                "request_id": current_request_id(),
            }
            body = json.dumps(error).encode("utf-8")
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"connection", b"close"),
            ]
            await send({"type": "http.response.start", "status": 413, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def receive_bounded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException: FastAPI passes it on from its body reading.
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, receive_bounded, send)

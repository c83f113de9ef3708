"""A real webhook receiver for tests and benchmarks: Python's `http.server` on a loopback
port, in a thread, that records every request (path, headers, raw body, arrival time) and
answers as told: `ok` (204), `redirect` (307 to `/followed`, with a 100 KiB body), or
`error` (500). `down()` closes its socket (connections are refused), `up()` listens again
on the same port."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from app.services.model_service.reference import free_loopback_port

BIG_BODY = b"x" * 100 * 1024


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)


class Receiver:
    """See the module docstring."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                if receiver.mode == "redirect":
                    self.send_response(307)
                    self.send_header("Location", f"http://127.0.0.1:{receiver.port}/followed")
                    self.send_header("Content-Length", str(len(BIG_BODY)))
                    self.end_headers()
                    self.wfile.write(BIG_BODY)
                elif receiver.mode == "error":
                    self.send_response(500)
                    self.send_header("Content-Length", "5")
                    self.end_headers()
                    self.wfile.write(b"oops!")
                else:
                    self.send_response(204)
                    self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def up(self) -> Receiver:
        """Listen (again) on the receiver's port."""
        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def down(self) -> None:
        """Stop listening: connections are refused until `up`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def taken(self) -> list[Received]:
        """A copy of what arrived so far."""
        with self._lock:
            return list(self.received)

"""uvicorn's httptools protocol with a JSON 400 (see `app.api.http_protocol`); a module
of its own because importing it needs httptools, which uvicorn treats as optional."""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app.api.http_protocol import unparsable_request_body


class JsonErrorHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a JSON 400 for a request it cannot parse."""

    def send_400_response(self, msg: str) -> None:
        """Answer 400 with the agent's JSON error and close (`msg`, uvicorn's plain text,
        is logged by uvicorn already)."""
        body = unparsable_request_body()
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
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
        self.transport.write(b"".join(content))
        self.transport.close()

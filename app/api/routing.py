"""How the API is mounted: every route at the PRD's root path and under `/api`, and the
HTTP methods every route answers besides its own (HEAD for GET, OPTIONS for all).

The customer's PRD (FR4) names the endpoints at the root (`POST /upload`, `GET /images`,
`GET /health` …); the web UI and the agent's links use `/api/...`. Both come from one
definition of each route: `include_api` includes the same router twice, so whatever the
router carries (dependencies, responses, tags) applies to both copies, and the OpenAPI
document lists each operation once (under `/api`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_PREFIX = "/api"

HEAD_REQUEST = "aoi.head_request"
"""Scope key set on a HEAD request answered by its GET route (see `MethodsMiddleware`)."""

_ALWAYS = ("OPTIONS",)


def include_api(app: FastAPI, router: APIRouter, **options: Any) -> None:
    """Serve `router` under `/api` (documented) and at the root (the PRD's paths, hidden
    from the OpenAPI document). `options` go to both `include_router` calls alike."""
    app.include_router(router, prefix=API_PREFIX, **options)
    app.include_router(router, include_in_schema=False, **options)


def route_methods(app: Any, path: str) -> set[str]:
    """The methods the routes of `app` at `path` declare themselves (empty: no such path)."""
    methods: set[str] = set()
    for route in iter_route_contexts(app.routes):
        regex = getattr(route, "path_regex", None)
        if not isinstance(regex, re.Pattern) or not regex.match(path):
            continue
        original = route.original_route
        if isinstance(original, Mount):
            methods.update(("GET", "HEAD"))  # static files
        else:
            methods.update(route.methods or ())
    return methods


def allowed_methods(app: Any, path: str) -> set[str]:
    """Every method some route of `app` answers at `path`, HEAD and OPTIONS included;
    empty when no route has this path."""
    methods = route_methods(app, path)
    if methods:
        if "GET" in methods:
            methods.add("HEAD")
        methods.update(_ALWAYS)
    return methods


def allow_header(methods: Iterable[str]) -> str:
    """The `Allow` header value, in a stable order."""
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return ", ".join(sorted(methods, key=lambda m: (order.index(m) if m in order else 99, m)))


def is_head_request(scope: Scope) -> bool:
    """Whether this (GET-routed) request is really a HEAD: answer headers only."""
    return bool(scope.get(HEAD_REQUEST))


class MethodsMiddleware:
    """HEAD on every GET route, OPTIONS on every route, and a full `Allow` on 405.

    - `HEAD` on a route that does not answer it itself (FastAPI's do not; static files
      do): routed as the GET (same dependencies, same checks) with the body dropped.
      Responses that would be costly to build (files, ZIPs) look at `is_head_request`
      and send headers only.
    - `OPTIONS` without CORS preflight headers: 204 with `Allow` listing the path's
      methods (404 passes through). CORS preflights (`Origin` plus
      `Access-Control-Request-Method`) are left to the CORS middleware.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "OPTIONS" and not _is_cors_preflight(scope):
            methods = allowed_methods(scope["app"], _route_path(scope))
            if methods:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 204,
                        "headers": [(b"allow", allow_header(methods).encode("latin-1"))],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
        if method == "HEAD" and "HEAD" not in route_methods(scope["app"], _route_path(scope)):
            scope = {**scope, "method": "GET", HEAD_REQUEST: True}
            send = _headers_only(send)
        await self.app(scope, receive, _full_allow_on_405(scope, send))


def _route_path(scope: Scope) -> str:
    """The path the routes see: without the `root_path` a proxy may have put in front."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _is_cors_preflight(scope: Scope) -> bool:
    names = {name for name, _ in scope["headers"]}
    return b"origin" in names and b"access-control-request-method" in names


def _headers_only(send: Send) -> Send:
    finished = False

    async def send_headers_only(message: Message) -> None:
        nonlocal finished
        if message["type"] != "http.response.body":
            await send(message)
        elif not finished:
            finished = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    return send_headers_only


def _full_allow_on_405(scope: Scope, send: Send) -> Send:
    async def send_with_allow(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 405:
            methods = allowed_methods(scope["app"], _route_path(scope))
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
            headers.append((b"allow", allow_header(methods).encode("latin-1")))
            message = {**message, "headers": headers}
        await send(message)

    return send_with_allow

"""The FastAPI application: routers, error handlers, request logging, lifespan."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api import download, health, query, upload
from app.config import Settings, get_settings
from app.errors import AgentError, DatabaseUnavailable
from app.runtime import agent_runtime
from app.services.ingestion.local import hot_folders
from app.services.system.health import agent_version
from app.web import register_web

logger = logging.getLogger("app.requests")

SWAGGER_ASSETS = "/static/vendor/swagger-ui"

OPENAPI_TAGS = [
    {"name": "Upload", "description": "Send images for inspection, one or a batch."},
    {"name": "Query", "description": "Inspection history: images, classes, regions, batches."},
    {"name": "Download", "description": "Input and result images, analysis JSON, batch ZIPs."},
    {"name": "System", "description": "Health and statistics."},
]


class RequestLogMiddleware:
    """Logs one line per HTTP request: method, path, status, duration (seconds)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            logger.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status_code,
                    "duration_s": round(time.perf_counter() - started, 4),
                },
            )


async def _agent_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AgentError)
    if exc.status_code >= 500:
        logger.warning("request failed", extra={"path": request.url.path, "error": exc.detail})
    return JSONResponse(exc.to_body(), status_code=exc.status_code)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if not (exc.connection_invalidated or isinstance(exc.orig, psycopg.OperationalError)):
        raise exc
    logger.error("database unavailable", extra={"path": request.url.path, "error": str(exc.orig)})
    error = DatabaseUnavailable(
        "the database is not answering; try again shortly, and if it persists check that"
        " PostgreSQL is running (GET /api/health shows its state)"
    )
    return JSONResponse(error.to_body(), status_code=error.status_code)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'] if p not in ('query', 'path', 'body'))}:"
        f" {err['msg']}"
        for err in exc.errors()
    )
    return JSONResponse(
        {"error": "invalid_request", "detail": problems, "errors": exc.errors()},
        status_code=422,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no such endpoint: {request.method} {request.url.path}; see /docs"
    return JSONResponse(
        {"error": "http_error", "detail": detail}, status_code=exc.status_code, headers=exc.headers
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The agent's ASGI app. `settings` must name the database and the model service
    (`run.py` fills them in); the lifespan connects to both and starts the queue."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            agent_runtime(settings) as runtime,
            hot_folders(settings, runtime.inspections, runtime.storage, runtime.sessions),
        ):
            app.state.runtime = runtime
            yield

    app = FastAPI(
        title="AOI Inference Agent",
        version=agent_version(),
        description=(
            "Sends PCB images from the AOI line to the defect-segmentation model service,"
            " keeps every input and result, and answers queries and downloads."
            ' Errors are JSON `{"error": code, "detail": message}`.'
        ),
        openapi_tags=OPENAPI_TAGS,
        lifespan=lifespan,
        docs_url=None,  # served below from vendored assets: the factory floor is offline
        redoc_url=None,
    )
    app.add_middleware(RequestLogMiddleware)
    app.add_exception_handler(AgentError, _agent_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for module in (upload, query, download, health):
        app.include_router(module.router)
    register_web(app, settings)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="AOI Inference Agent — API",
            swagger_js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_ASSETS}/favicon-32x32.png",
        )

    return app

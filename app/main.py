"""The FastAPI application: routers, error handlers, request logging, lifespan."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_fastapi_instrumentator import Instrumentator
from sqlalchemy.exc import DBAPIError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api import (
    boards,
    dashboard,
    download,
    exports,
    golden,
    health,
    keys,
    metrics,
    models,
    query,
    replays,
    reports,
    review,
    spc,
    upload,
    webhooks,
)
from app.api.middleware import (
    RequestBodyLimitMiddleware,
    RequestContextMiddleware,
    current_request_id,
)
from app.api.params import validation_message
from app.api.routing import API_PREFIX, MethodsMiddleware, include_api
from app.api.security import install_security
from app.config import Settings, get_settings
from app.errors import AgentError, DatabaseUnavailable
from app.runtime import agent_runtime
from app.services.ingestion.local import hot_folders
from app.services.system.health import agent_version
from app.services.system.metrics import HTTP_INSTRUMENTATION, mark_process_dead
from app.utils.logging import configure_logging
from app.utils.text import printable
from app.web import register_web

logger = logging.getLogger("app.requests")

SWAGGER_ASSETS = "/static/vendor/swagger-ui"

OPENAPI_TAGS = [
    {"name": "Upload", "description": "Send images for inspection, one or a batch."},
    {"name": "Query", "description": "Inspection history: images, classes, regions, batches."},
    {"name": "Download", "description": "Input and result images, analysis JSON, batch ZIPs."},
    {"name": "System", "description": "Health and statistics."},
    {"name": "Keys", "description": "API keys (admin): create, list, revoke."},
    {
        "name": "Webhooks",
        "description": "Signed webhooks (admin): endpoints, deliveries, redelivery.",
    },
]


def _error_response(
    body: dict[str, object], status_code: int, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An error answer: `body` plus the request id (see `ErrorBody`)."""
    return JSONResponse(
        {**body, "request_id": current_request_id()}, status_code=status_code, headers=headers
    )


class JsonCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware, with refused preflights answered in the agent's JSON
    error shape instead of plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        headers = {
            k: v for k, v in response.headers.items() if k.lower().startswith("access-control")
        }
        return JSONResponse(
            {
                "error": "cors_refused",
                "detail": f"cross-origin request refused ({refused} not allowed); the"
                " agent's CORS_ORIGINS setting lists the web origins that may call it",
            },
            status_code=response.status_code,
            headers=headers,
        )


def swagger_page(openapi_url: str) -> HTMLResponse:
    """Swagger UI from the vendored assets, started by a script file (no inline script, so
    it runs under the CSP)."""
    return HTMLResponse(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>AOI Inference Agent — API</title>
<link rel="icon" href="{SWAGGER_ASSETS}/favicon-32x32.png">
<link rel="stylesheet" href="{SWAGGER_ASSETS}/swagger-ui.css">
</head><body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="{SWAGGER_ASSETS}/swagger-ui-bundle.js"></script>
<script src="/static/js/swagger_init.js"></script>
</body></html>"""
    )


async def _agent_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AgentError)
    if exc.status_code >= 500:
        logger.warning("request failed", extra={"path": request.url.path, "error": exc.detail})
    return _error_response(exc.to_body(), exc.status_code, exc.response_headers() or None)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if not (exc.connection_invalidated or isinstance(exc.orig, psycopg.OperationalError)):
        raise exc
    logger.error("database unavailable", extra={"path": request.url.path, "error": str(exc.orig)})
    error = DatabaseUnavailable(
        "the database is not answering; try again shortly, and if it persists check that"
        " PostgreSQL is running (GET /api/health shows its state)"
    )
    return _error_response(error.to_body(), error.status_code)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Only where, what and which rule: the offending input is not echoed back.
    errors = [
        {
            "loc": [str(p) for p in err["loc"]],
            "msg": validation_message(err),
            "type": str(err["type"]),
        }
        for err in exc.errors()
    ]
    problems = "; ".join(
        f"{'.'.join(p for p in err['loc'] if p not in ('query', 'path', 'body'))}: {err['msg']}"
        for err in errors
    )
    return _error_response({"error": "invalid_request", "detail": problems, "errors": errors}, 422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if exc.status_code == 400 and detail == "There was an error parsing the body":
        detail = (
            "the body is not valid JSON; send a JSON object as the route's schema in /docs shows"
        )
    if exc.status_code == 413:  # RequestBodyLimitMiddleware
        return _error_response({"error": "request_too_large", "detail": str(detail)}, 413)
    if exc.status_code == 404 and detail == "Not Found":
        detail = (
            f"no such endpoint: {request.method} {printable(request.url.path, 200)}; the API"
            " answers at the root (the PRD's paths, e.g. /upload, /images) and under /api;"
            " see /docs"
        )
    return _error_response(
        {"error": "http_error", "detail": str(detail)}, exc.status_code, headers=exc.headers
    )


def create_worker_app() -> FastAPI:
    """The app of one of several API worker processes (WEB_CONCURRENCY > 1, started by
    `app.launcher`): settings from the environment, which the launcher completed with the
    database and model-service URLs; logging set up in this process."""
    settings = Settings()
    configure_logging(settings.log_level, settings.resolved_log_dir)
    return create_app(settings)


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
            try:
                yield
            finally:
                # Multi-process mode: this process's live gauges (in flight, up) end with it.
                mark_process_dead(os.getpid())
                await app.state.security.throttle.close()

    app = FastAPI(
        title="AOI Inference Agent",
        version=agent_version(),
        description=(
            "Sends PCB images from the AOI line to the defect-segmentation model service,"
            " keeps every input and result, and answers queries and downloads."
            ' Errors are JSON `{"error": code, "detail": message, "request_id": id}`;'
            " every answer carries its `X-Request-ID`.\n\n"
            "Every path below also answers at the root without `/api`: these are the"
            " customer's PRD paths (`POST /upload`, `POST /upload/batch`, `GET /images`,"
            " `GET /images/{img_unique_id}/regions`, `GET /download/json/{img_unique_id}`,"
            " `GET /query/defects`, `GET /health`, `GET /stats` …), aliases of the"
            " operations documented here. GET operations also answer HEAD; every path"
            " answers OPTIONS with its `Allow` header."
        ),
        openapi_tags=OPENAPI_TAGS,
        lifespan=lifespan,
        docs_url=None,  # served below from vendored assets: the factory floor is offline
        redoc_url=None,
    )
    app.add_middleware(MethodsMiddleware)
    # HTTP request counts and durations by route template; scrapes are not counted.
    Instrumentator(excluded_handlers=[f"^{metrics.METRICS_PATH}$"]).add(
        HTTP_INSTRUMENTATION
    ).instrument(app)
    if settings.cors_origin_list:
        app.add_middleware(
            JsonCORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "HEAD", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Accept"],
            expose_headers=["Content-Disposition"],
            max_age=600,
        )
    app.add_middleware(
        RequestBodyLimitMiddleware,
        max_bytes=int(settings.max_request_body_kb * 1024),
        exempt_paths=frozenset(p for u in upload.UPLOAD_PATHS for p in (u, API_PREFIX + u)),
    )
    # Outermost: ids, security headers and the request line for every answer, a crash's too.
    app.add_middleware(RequestContextMiddleware)
    install_security(app, settings)
    app.add_exception_handler(AgentError, _agent_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for module in (
        upload,
        query,
        download,
        health,
        dashboard,
        keys,
        exports,
        review,
        golden,
        boards,
        spc,
        reports,
        webhooks,
        replays,
    ):
        include_api(app, module.router)
    include_api(app, review.admin_router)  # PUT /review/reasons: admin only
    # Under /api only: the root path /models is the web UI's Models page (no PRD path to
    # keep there).
    app.include_router(models.router, prefix=API_PREFIX)
    # Prometheus' own convention, like /docs: one path, at the root, not in the OpenAPI
    # document (its answer is Prometheus text, not JSON).
    app.include_router(metrics.router, include_in_schema=False)
    register_web(app, settings)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return swagger_page(app.openapi_url or "/openapi.json")

    return app

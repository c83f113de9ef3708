"""HTTP layer of the reference model service (docs/model-service-contract.md).

``POST /upload`` takes a multipart file field ``image`` and answers the contract's
layout; ``GET /health`` reports the engine and the class names. Errors are JSON
``{"error": ..., "detail": ...}``: 400 undecodable or empty image, 413 upload over
``max_upload_size_mb``, 422 missing ``image`` field.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from segformer_service.config import ServiceSettings
from segformer_service.errors import ServiceError, UploadTooLarge
from segformer_service.inspection import InspectionService
from segformer_service.schemas import ErrorResponse, HealthResponse, UploadResponse

logger = logging.getLogger("segformer_service")

_READ_CHUNK_BYTES = 1024 * 1024
_MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""Allowance for multipart headers when rejecting early on ``Content-Length``."""


def _error(status_code: int, error: str, detail: Any) -> JSONResponse:
    return JSONResponse(status_code=status_code, content={"error": error, "detail": detail})


def _service(request: Request) -> InspectionService:
    service: InspectionService = request.app.state.inspection
    return service


ServiceDep = Annotated[InspectionService, Depends(_service)]


async def read_limited(upload: UploadFile, limit_bytes: int) -> bytes:
    """Read an uploaded file, at most ``limit_bytes`` bytes.

    Raises:
        UploadTooLarge: if the file holds more than ``limit_bytes`` bytes.
    """
    chunks: list[bytes] = []
    total = 0
    while chunk := await upload.read(_READ_CHUNK_BYTES):
        total += len(chunk)
        if total > limit_bytes:
            raise UploadTooLarge(f"the upload exceeds the limit of {limit_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the reference model service.

    Args:
        settings: service settings; ``None`` reads them from the environment
            (prefix ``REFERENCE_SERVICE_``).

    Raises:
        ValueError: if ``settings.engine`` names no registered engine.
    """
    settings = settings if settings is not None else ServiceSettings()
    inspection = InspectionService(settings)
    limit_bytes = settings.max_upload_size_bytes
    # Made on first use, in the event loop that serves the requests.
    limiters: list[anyio.CapacityLimiter] = []

    app = FastAPI(
        title="AOI reference model service",
        summary="PCB defect segmentation (classical, golden-board or ONNX engine) "
        "behind the model-service contract.",
        version="1.0.0",
    )
    app.state.settings = settings
    app.state.inspection = inspection

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return _error(exc.status_code, exc.error, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", ""))}
            for err in exc.errors()
        ]
        return _error(422, "invalid request", detail)

    @app.middleware("http")
    async def _reject_oversized(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Refuse on the declared length before the multipart parser spools the body.
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit_bytes + _MULTIPART_OVERHEAD_BYTES:
            return _error(413, UploadTooLarge.error, f"the upload exceeds {limit_bytes} bytes")
        return await call_next(request)

    @app.post(
        "/upload",
        response_model=UploadResponse,
        responses={
            400: {"model": ErrorResponse, "description": "empty or undecodable image"},
            413: {"model": ErrorResponse, "description": "upload over the size limit"},
            422: {"model": ErrorResponse, "description": "missing `image` field"},
        },
    )
    async def upload(
        service: ServiceDep, image: Annotated[UploadFile, File(description="PCB image")]
    ) -> UploadResponse:
        """Segment the defects of one image; see docs/model-service-contract.md."""
        data = await read_limited(image, limit_bytes)
        if not limiters:
            limiters.append(anyio.CapacityLimiter(settings.max_concurrent_inferences))
        # At most `max_concurrent_inferences` in worker threads at once: each may take
        # about 21 bytes per pixel, so memory stays bounded under load.
        result = await anyio.to_thread.run_sync(
            service.inspect, data, image.filename or "upload", limiter=limiters[0]
        )
        logger.info(
            "inspected %s in %.3f s: %s",
            result.filename,
            result.processing_time_seconds,
            {name: c.total_regions for name, c in result.result_json.classes.items()},
        )
        return result

    @app.get("/health", response_model=HealthResponse)
    async def health(service: ServiceDep) -> HealthResponse:
        """Liveness: the engine name and the class names it can report."""
        return HealthResponse(engine=service.engine.name, classes=service.settings.class_names)

    return app

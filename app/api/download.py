"""Download routes: images, analysis JSON, thumbnails and batch ZIPs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from app.api.deps import InspectionServiceDep, RuntimeDep, SessionDep
from app.api.params import BatchId, ImgUniqueId
from app.api.routing import is_head_request
from app.api.security import LINK_ERRORS, DownloadAccess
from app.api.viewer import ViewerDep
from app.errors import (
    VALIDATION_ERROR_RESPONSE,
    BatchNotFound,
    ImageNotFound,
    InsufficientStorage,
    ResultNotReady,
    StorageUnavailable,
    StoredFileMissing,
    responses,
)
from app.services.history import export
from app.services.storage import Storage
from app.utils.text import content_disposition

router = APIRouter(
    tags=["Download"],
    dependencies=[DownloadAccess],
    responses={**LINK_ERRORS, **VALIDATION_ERROR_RESPONSE},
)

_FILE_ERRORS = responses(ImageNotFound, ResultNotReady, StoredFileMissing, StorageUnavailable)
_PRESIGNED: dict[int | str, dict[str, Any]] = {
    307: {
        "description": "With an object store and S3_PRESIGNED_DOWNLOADS=true: the file is"
        " fetched from the short-lived presigned URL in `Location`."
    }
}


def _binary(description: str, *media_types: str) -> dict[int | str, dict[str, Any]]:
    """A documented 200 whose body is a file of one of `media_types`."""
    content = {t: {"schema": {"type": "string", "format": "binary"}} for t in media_types}
    return {200: {"description": description, "content": content}}


class _DownloadResponse(FileResponse):
    """A file answer; a HEAD request (routed as GET) gets the headers only, file unread."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_head_request(scope):
            scope = {**scope, "method": "HEAD"}
        await super().__call__(scope, receive, send)


async def _send(
    file: export.FileToSend,
    storage: Storage,
    request: Request,
    inline: bool = False,
    redirect: bool = True,
) -> Response:
    """The file: sent from disk (folder backend), redirected to a presigned URL (object
    store with S3_PRESIGNED_DOWNLOADS, attachments only), or streamed from the store."""
    disposition = "inline" if inline else "attachment"
    if file.path is not None:
        return _DownloadResponse(
            file.path,
            media_type=file.media_type,
            filename=file.filename,
            content_disposition_type=disposition,
        )
    if redirect and not inline:
        url = await storage.presigned_url(file.key)
        if url is not None:
            return RedirectResponse(url, status_code=307)
    try:
        stream = await storage.open_stream(file.key)
    except FileNotFoundError as exc:
        raise StoredFileMissing(f"{file.filename} is missing from storage") from exc
    headers = {
        "Content-Disposition": content_disposition(file.filename, disposition),
        "Content-Length": str(stream.size),
    }
    if is_head_request(request.scope):
        await stream.aclose()
        return Response(media_type=file.media_type, headers=headers)
    return StreamingResponse(stream.chunks, media_type=file.media_type, headers=headers)


@router.get(
    "/download/image/{img_unique_id}/{kind}",
    response_class=FileResponse,
    summary="Download the input or a result image",
    responses={
        **_binary(
            "The image: `input` as uploaded (JPEG, PNG, TIFF or BMP), the others PNG.",
            "image/png",
            "image/jpeg",
            "image/tiff",
            "image/bmp",
        ),
        **_PRESIGNED,
        **_FILE_ERRORS,
    },
)
async def download_image(
    img_unique_id: ImgUniqueId,
    kind: Literal["input", "combined", "mask", "overlay"],
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    inline: Annotated[bool, Query(description="Show in the browser instead of saving.")] = False,
    as_format: Annotated[
        Literal["original", "png"],
        Query(
            alias="format",
            description="`png`: a TIFF or BMP input converted to PNG (made once, then kept),"
            " for browsers, which cannot show TIFF; JPEG and PNG inputs and the result"
            " images are answered as they are.",
        ),
    ] = "original",
) -> Response:
    """`input` is the uploaded file as received; the others are the model service's PNGs.
    With an object store and S3_PRESIGNED_DOWNLOADS, answers 307 to a short-lived URL of
    the store (unless `inline`)."""
    if kind == "input" and as_format == "png":
        file = await export.input_png_file(
            session, runtime.storage, img_unique_id, runtime.client.decode_limiter
        )
    else:
        file = await export.image_file(session, runtime.storage, img_unique_id, kind)
    return await _send(file, runtime.storage, request, inline)


@router.get(
    "/download/json/{img_unique_id}",
    response_class=FileResponse,
    summary="Download the analysis JSON",
    responses={
        200: {
            "description": "The analysis JSON, as a file.",
            "content": {
                "application/json": {
                    "schema": {"type": "object"},
                    "example": {"image_shape": [1792, 1792], "classes": {"...": "..."}},
                }
            },
        },
        **_PRESIGNED,
        **_FILE_ERRORS,
    },
)
async def download_json(
    img_unique_id: ImgUniqueId,
    request: Request,
    session: SessionDep,
    service: InspectionServiceDep,
) -> Response:
    """The model service's analysis JSON for this image, exactly as it was sent. With an
    object store and S3_PRESIGNED_DOWNLOADS, answers 307 to a short-lived URL of the store."""
    file = await export.analysis_file(session, service, img_unique_id)
    return await _send(file, service.storage, request)


@router.get(
    "/images/{img_unique_id}/thumbnail",
    response_class=FileResponse,
    summary="A small JPEG of an image, for galleries",
    responses={
        **_binary("The thumbnail.", "image/jpeg"),
        **_FILE_ERRORS,
        **responses(InsufficientStorage),
    },
)
async def thumbnail(
    img_unique_id: ImgUniqueId,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    size: Annotated[int, Query(ge=32, le=1024, description="Longest side, pixels.")] = 256,
    kind: Literal["input", "overlay"] = "overlay",
) -> Response:
    """Generated once and kept in the storage under `thumbnails/`."""
    file = await export.thumbnail_file(
        session, runtime.storage, img_unique_id, size, kind, runtime.client.decode_limiter
    )
    response = await _send(file, runtime.storage, request, inline=True, redirect=False)
    response.headers["Cache-Control"] = "private, max-age=86400"
    return response


@router.get(
    "/download/batch/{batch_id}",
    response_class=StreamingResponse,
    summary="Download a whole batch as ZIP",
    responses={
        **_binary("The ZIP, streamed.", "application/zip"),
        **responses(BatchNotFound, StorageUnavailable),
    },
)
async def download_batch(
    batch_id: BatchId,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    service: InspectionServiceDep,
    viewer: ViewerDep,
) -> Response:
    """Per image: input, combined, mask, overlay and analysis JSON; plus `summary.csv`.
    Streamed while it is built (so HEAD answers without a length). For a reviewer who
    audits a board or may audit it, its summary row has no verdicts, reasons or
    disposition (blind second review)."""
    stream = await export.batch_zip(session, runtime.storage, service, batch_id, viewer)
    headers = {"Content-Disposition": f'attachment; filename="{batch_id}.zip"'}
    if is_head_request(request.scope):
        return Response(media_type="application/zip", headers=headers)
    return StreamingResponse(stream, media_type="application/zip", headers=headers)

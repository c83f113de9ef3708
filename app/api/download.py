"""Download routes: images, analysis JSON, thumbnails and batch ZIPs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from app.api.deps import InspectionServiceDep, RuntimeDep, SessionDep
from app.api.params import BatchId, ImgUniqueId
from app.api.routing import is_head_request
from app.api.security import LINK_ERRORS, DownloadAccess
from app.errors import (
    VALIDATION_ERROR_RESPONSE,
    BatchNotFound,
    ImageNotFound,
    InsufficientStorage,
    ResultNotReady,
    StoredFileMissing,
    responses,
)
from app.services.history import export

router = APIRouter(
    tags=["Download"],
    dependencies=[DownloadAccess],
    responses={**LINK_ERRORS, **VALIDATION_ERROR_RESPONSE},
)

_FILE_ERRORS = responses(ImageNotFound, ResultNotReady, StoredFileMissing)


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


def _send(file: export.FileToSend, inline: bool = False) -> FileResponse:
    return _DownloadResponse(
        file.path,
        media_type=file.media_type,
        filename=file.filename,
        content_disposition_type="inline" if inline else "attachment",
    )


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
        **_FILE_ERRORS,
    },
)
async def download_image(
    img_unique_id: ImgUniqueId,
    kind: Literal["input", "combined", "mask", "overlay"],
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
) -> FileResponse:
    """`input` is the uploaded file as received; the others are the model service's PNGs."""
    if kind == "input" and as_format == "png":
        file = await export.input_png_file(
            session, runtime.storage, img_unique_id, runtime.client.decode_limiter
        )
    else:
        file = await export.image_file(session, runtime.storage, img_unique_id, kind)
    return _send(file, inline)


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
        **_FILE_ERRORS,
    },
)
async def download_json(
    img_unique_id: ImgUniqueId, session: SessionDep, service: InspectionServiceDep
) -> FileResponse:
    """The model service's analysis JSON for this image, exactly as it was sent."""
    return _send(await export.analysis_file(session, service, img_unique_id))


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
    session: SessionDep,
    runtime: RuntimeDep,
    size: Annotated[int, Query(ge=32, le=1024, description="Longest side, pixels.")] = 256,
    kind: Literal["input", "overlay"] = "overlay",
) -> FileResponse:
    """Generated once and cached on disk under DATA_DIR/thumbnails."""
    file = await export.thumbnail_file(
        session, runtime.storage, img_unique_id, size, kind, runtime.client.decode_limiter
    )
    response = _send(file, inline=True)
    response.headers["Cache-Control"] = "private, max-age=86400"
    return response


@router.get(
    "/download/batch/{batch_id}",
    response_class=StreamingResponse,
    summary="Download a whole batch as ZIP",
    responses={
        **_binary("The ZIP, streamed.", "application/zip"),
        **responses(BatchNotFound),
    },
)
async def download_batch(
    batch_id: BatchId,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    service: InspectionServiceDep,
) -> Response:
    """Per image: input, combined, mask, overlay and analysis JSON; plus `summary.csv`.
    Streamed while it is built (so HEAD answers without a length)."""
    stream = await export.batch_zip(session, runtime.storage, service, batch_id)
    headers = {"Content-Disposition": f'attachment; filename="{batch_id}.zip"'}
    if is_head_request(request.scope):
        return Response(media_type="application/zip", headers=headers)
    return StreamingResponse(stream, media_type="application/zip", headers=headers)

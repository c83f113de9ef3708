"""Golden-board routes: the library (admin) and each inspection's golden board and crops
(read), so the viewer shows every call beside the same spot of the golden board."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from app.api.deps import LinksDep, RuntimeDep, SessionDep
from app.api.params import PLAIN_TEXT_PATTERN, ImgUniqueId
from app.api.security import AUTH_ERRORS, LINK_ERRORS, AdminAccess, DownloadAccess, ReadAccess
from app.api.upload import multipart_body
from app.errors import (
    VALIDATION_ERROR_RESPONSE,
    BadUploadRequest,
    ImageNotFound,
    ImageTooLarge,
    InsufficientStorage,
    ResultNotReady,
    StorageUnavailable,
    StoredFileMissing,
    UnsupportedImage,
    UploadTimeout,
    responses,
)
from app.models.database import GoldenBoard
from app.models.golden import GoldenOffset, GoldenOut, ImageGolden
from app.services.golden.errors import CropOutsideImage, GoldenNotFound, InvalidGoldenImage
from app.services.golden.service import GOLDEN_ID_PATTERN, GoldenLibrary, GoldenService
from app.services.history.queries import Links

router = APIRouter(tags=["Golden boards"], responses={**VALIDATION_ERROR_RESPONSE})

GoldenId = Annotated[
    str,
    Path(
        pattern=GOLDEN_ID_PATTERN,
        description="A golden image's id: 1-128 letters, digits, `.`, `_` or `-`, starting"
        " with a letter or digit (a GOLDEN_DIR file's id is its name's stem).",
        examples=["12000052"],
    ),
]
MAX_CROP_PX = 4096


async def get_golden_service(
    request: Request, runtime: RuntimeDep, session: SessionDep
) -> GoldenService:
    """Golden-board operations over this request's session, with the process's library."""
    library = runtime.golden_library or getattr(request.app.state, "golden_library", None)
    if library is None or library.storage is not runtime.storage:
        library = GoldenLibrary(
            runtime.settings, runtime.storage, runtime.client.decode_limiter, runtime.sessions
        )
        request.app.state.golden_library = library
    return GoldenService(session, library, runtime.inspections)


GoldenServiceDep = Annotated[GoldenService, Depends(get_golden_service)]


def _png(description: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": description,
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        }
    }


def golden_out(board: GoldenBoard, links: Links) -> GoldenOut:
    """The API form of a library row."""
    return GoldenOut.model_validate(
        {
            **{c.key: getattr(board, c.key) for c in GoldenBoard.__table__.columns},
            "image_url": links.golden_image(board.golden_id),
        }
    )


@router.get(
    "/golden",
    response_model=list[GoldenOut],
    summary="List the golden images (admin)",
    dependencies=[AdminAccess],
    responses=AUTH_ERRORS,
)
async def list_golden(service: GoldenServiceDep, links: LinksDep) -> list[GoldenOut]:
    """Every golden image of the library, by id: those added through the API and those of
    GOLDEN_DIR (indexed again now, so new files show)."""
    return [golden_out(board, links) for board in await service.list()]


@router.put(
    "/golden/{golden_id}",
    response_model=GoldenOut,
    summary="Add or replace a golden image (admin)",
    dependencies=[AdminAccess],
    openapi_extra=multipart_body("image", many=False, context=False),
    responses={
        **AUTH_ERRORS,
        **responses(
            BadUploadRequest,
            UnsupportedImage,
            ImageTooLarge,
            InvalidGoldenImage,
            UploadTimeout,
            InsufficientStorage,
            StorageUnavailable,
        ),
        201: {"model": GoldenOut, "description": "A new golden image was added."},
    },
)
async def put_golden(
    golden_id: GoldenId,
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    service: GoldenServiceDep,
    links: LinksDep,
    product: Annotated[
        str | None,
        Query(max_length=128, pattern=PLAIN_TEXT_PATTERN, description="The board's product."),
    ] = None,
    side: Annotated[
        str | None,
        Query(max_length=32, pattern=PLAIN_TEXT_PATTERN, description="The board side, e.g. top."),
    ] = None,
) -> GoldenOut:
    """The image in the multipart field `image` (at most MAX_FILE_SIZE_MB), kept in the
    agent's storage; `product` and `side` in the query. Answers 201 when new, 200 when it
    replaced one. The registrations made against the old image (and the boards that had
    none) are made again on their next request."""
    board, created = await service.put_upload(request, golden_id, product or None, side or None)
    if created:
        response.status_code = 201
    return golden_out(board, links)


@router.delete(
    "/golden/{golden_id}",
    response_model=GoldenOut,
    summary="Remove a golden image (admin)",
    dependencies=[AdminAccess],
    responses={**AUTH_ERRORS, **responses(GoldenNotFound)},
)
async def delete_golden(
    golden_id: GoldenId, service: GoldenServiceDep, links: LinksDep
) -> GoldenOut:
    """The row and the stored file go (a GOLDEN_DIR file is left on disk, and indexed again
    while it is there); boards registered against it look for another one."""
    return golden_out(await service.delete(golden_id), links)


@router.get(
    "/golden/{golden_id}/image",
    response_class=Response,
    summary="A golden image's file",
    dependencies=[DownloadAccess],
    responses={
        **LINK_ERRORS,
        **responses(GoldenNotFound, StoredFileMissing),
        200: {
            "description": "The golden image as added (JPEG, PNG, TIFF or BMP).",
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}}
                for t in ("image/jpeg", "image/png", "image/tiff", "image/bmp")
            },
        },
    },
)
async def golden_image(golden_id: GoldenId, service: GoldenServiceDep) -> Response:
    """The file as it was added or found in GOLDEN_DIR."""
    board, data = await service.image_bytes(golden_id)
    return Response(
        data, media_type=board.media_type, headers={"Cache-Control": "private, max-age=300"}
    )


@router.get(
    "/images/{img_unique_id}/golden",
    response_model=ImageGolden,
    summary="An inspection's golden board and registration",
    dependencies=[ReadAccess],
    responses={
        **AUTH_ERRORS,
        **responses(ImageNotFound, GoldenNotFound, ResultNotReady, StoredFileMissing),
    },
)
async def image_golden(
    img_unique_id: ImgUniqueId, service: GoldenServiceDep, links: LinksDep
) -> ImageGolden:
    """The golden board of the inspected board, where it lies (`offset`: golden pixel
    (x, y) is at (x + dx, y + dy) in the inspected image), the match score and a link to
    the golden image. Registered once, on the first request, then read from the database;
    404 `golden_not_found` when no golden image matches the board."""
    found = await service.match(img_unique_id)
    board = found.board
    return ImageGolden(
        img_unique_id=img_unique_id,
        golden_id=board.golden_id,
        product=board.product,
        side=board.side,
        offset=GoldenOffset(dx=found.dx, dy=found.dy),
        score=found.score,
        registration="model" if found.method == "model" else "agent",
        image_url=links.golden_image(board.golden_id),
        golden_width=board.image_width,
        golden_height=board.image_height,
    )


@router.get(
    "/images/{img_unique_id}/golden/crop",
    response_class=Response,
    summary="The golden crop under a box of the inspected image (PNG)",
    dependencies=[ReadAccess],
    responses={
        **AUTH_ERRORS,
        **_png("The golden image's part under the box, the box's size, black outside it."),
        **responses(
            ImageNotFound, GoldenNotFound, ResultNotReady, StoredFileMissing, CropOutsideImage
        ),
    },
)
async def image_golden_crop(
    img_unique_id: ImgUniqueId,
    service: GoldenServiceDep,
    x: Annotated[int, Query(ge=0, le=2**31 - 1, description="Box left, inspected pixels.")],
    y: Annotated[int, Query(ge=0, le=2**31 - 1, description="Box top, inspected pixels.")],
    width: Annotated[int, Query(ge=1, le=MAX_CROP_PX, description="Box width, pixels.")],
    height: Annotated[int, Query(ge=1, le=MAX_CROP_PX, description="Box height, pixels.")],
) -> Response:
    """The golden image's pixels that lie under the box `(x, y, width, height)` of the
    inspected image (golden pixel = inspected pixel − offset, to the nearest whole pixel),
    as a PNG of the box's size; parts beyond the golden image are black. 422 when the box
    is not within the inspected image."""
    png = await service.crop(img_unique_id, x, y, width, height)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})

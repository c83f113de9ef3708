"""Upload routes: single image, batch, retry, batch progress."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, status

from app.api.deps import InspectionServiceDep, LinksDep, QueryServiceDep, UploadServiceDep
from app.api.params import BatchId, ImgUniqueId
from app.api.security import AUTH_ERRORS, MethodAccess
from app.errors import (
    VALIDATION_ERROR_RESPONSE,
    BadImage,
    BadUploadRequest,
    BatchNotFound,
    DuplicateInProgress,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    ImageNotFound,
    ImageTooLarge,
    InsufficientStorage,
    ModelServiceBadAnswer,
    ModelServiceUnavailable,
    NotRetryable,
    StorageUnavailable,
    UnsupportedImage,
    UploadTimeout,
    responses,
)
from app.models.context import (
    CONTEXT_FIELDS,
    InspectionContext,
)
from app.models.schemas import (
    BatchAccepted,
    BatchRetried,
    BatchStatus,
    BatchUploadResult,
    UploadResponse,
)
from app.services.history.queries import upload_response

router = APIRouter(
    tags=["Upload"],
    dependencies=[MethodAccess],
    responses={**AUTH_ERRORS, **VALIDATION_ERROR_RESPONSE},
)

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/tiff", "image/bmp")
# Paths (also under /api) whose bodies the receiver bounds, not MAX_REQUEST_BODY_KB.
UPLOAD_PATHS = ("/upload", "/upload/batch")

IncludeImages = Annotated[
    Literal["base64"] | None,
    Query(description="`base64` adds the three result PNGs to the answer, base64-encoded."),
]
SkipDuplicates = Annotated[
    bool,
    Query(
        description="Answer with the earlier inspection of the same bytes instead of"
        " inspecting them again (default: inspect again, marked `repeat_of`)."
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Send the same request again with the same key (within 24 h) to get the"
        " first answer again instead of a second inspection. See docs/ingestion.md.",
    ),
]


def multipart_body(field: str, many: bool, context: bool = True) -> dict[str, Any]:
    """The OpenAPI `requestBody` of an image upload: the file field `field` (one image, or
    `many`), and with `context` the board context fields (single upload) or the `manifest`
    (batch) beside it."""
    file_schema: dict[str, Any] = {
        "type": "string",
        "format": "binary",
        "description": "A JPEG, PNG, TIFF or BMP image.",
    }
    schema = {"type": "array", "items": file_schema, "minItems": 1} if many else file_schema
    example = (
        'curl -F images=@a.jpg -F images=@b.jpg -F \'manifest={"a.jpg":{"board_serial":"SN1"}}\''
        if many
        else "curl -F image=@board.jpg -F board_serial=SN123456 -F product=CTRL-A -F side=top"
    )
    context_schema = InspectionContext.model_json_schema()["properties"]
    extra: dict[str, Any] = (
        {
            "manifest": {
                "type": "string",
                "description": "Board context as JSON: one context for every file, or file"
                " name → context (see docs/boards.md). A name that matches no file is a 422.",
            }
        }
        if many
        else {name: context_schema[name] for name in CONTEXT_FIELDS}
    )
    if not context:
        extra = {}
        example = "curl -F image=@golden.jpg"
    return {
        "requestBody": {
            "required": True,
            "description": f"multipart/form-data, e.g. `{example}`",
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [field],
                        "properties": {field: schema, **extra},
                    },
                    "encoding": {field: {"contentType": ", ".join(IMAGE_MEDIA_TYPES)}},
                }
            },
        }
    }


@router.post(
    "/upload",
    response_model=UploadResponse,
    summary="Inspect one image",
    openapi_extra=multipart_body("image", many=False),
    responses=responses(
        BadImage,
        BadUploadRequest,
        UnsupportedImage,
        ImageTooLarge,
        ModelServiceBadAnswer,
        ModelServiceUnavailable,
        UploadTimeout,
        InsufficientStorage,
        StorageUnavailable,
        DuplicateInProgress,
        IdempotencyKeyInUse,
        IdempotencyKeyReused,
    ),
)
async def upload_image(
    request: Request,
    uploads: UploadServiceDep,
    include_images: IncludeImages = None,
    skip_duplicates: SkipDuplicates = False,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Upload one JPEG, PNG, TIFF or BMP image (field `image`, at most MAX_FILE_SIZE_MB) and
    inspect it now. The image is kept and ledgered before inference: if the model service
    fails, the answer (503/502) names the `img_unique_id` to retry. Optional form fields
    give the board context (`board_serial`, `product`, `line`, `side`...; docs/boards.md);
    one out of bounds is a 422 and nothing is kept."""
    answer = await uploads.single(
        request,
        include_base64=include_images == "base64",
        skip_duplicates=skip_duplicates,
        idempotency_key=idempotency_key,
    )
    return answer.response()


@router.post(
    "/upload/batch",
    response_model=BatchAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Inspect many images as a batch",
    openapi_extra=multipart_body("images", many=True),
    responses={
        200: {
            "model": BatchUploadResult,
            "description": "With `wait=true`: every image done. With `skip_duplicates=true`"
            " and every usable file already inspected: nothing queued, `batch_id` null.",
        },
        **responses(
            BadImage,
            BadUploadRequest,
            UploadTimeout,
            InsufficientStorage,
            StorageUnavailable,
            IdempotencyKeyInUse,
            IdempotencyKeyReused,
        ),
    },
)
async def upload_batch(
    request: Request,
    uploads: UploadServiceDep,
    wait: Annotated[
        bool, Query(description="Answer only when every image is done (200 with results).")
    ] = False,
    skip_duplicates: SkipDuplicates = False,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Upload up to MAX_BATCH_SIZE images (field `images`). Each usable file is stored,
    ledgered and queued; unusable ones are reported in `rejected`, already inspected ones
    (with `skip_duplicates=true`) in `skipped_duplicates`. Progress:
    `GET /api/batches/{batch_id}`. With `wait=true` (the PRD's FR4.2) the answer comes when
    every image is done, with `results`: per accepted image, in upload order, the
    single-upload answer or its error. The optional `manifest` field gives the board
    context (docs/boards.md); an invalid one is a 422 and nothing is kept."""
    answer = await uploads.batch(
        request, wait=wait, skip_duplicates=skip_duplicates, idempotency_key=idempotency_key
    )
    return answer.response()


@router.post(
    "/images/{img_unique_id}/retry",
    response_model=UploadResponse,
    summary="Inspect a failed image again",
    responses=responses(
        ImageNotFound,
        NotRetryable,
        ModelServiceBadAnswer,
        ModelServiceUnavailable,
        InsufficientStorage,
        StorageUnavailable,
    ),
)
async def retry_image(
    img_unique_id: ImgUniqueId,
    service: InspectionServiceDep,
    links: LinksDep,
    include_images: IncludeImages = None,
) -> UploadResponse:
    """Run inference again for an image whose inspection failed; its kept input is used."""
    await service.ensure_disk_space()
    outcome = await service.retry(img_unique_id)
    return upload_response(outcome, links, include_base64=include_images == "base64")


@router.get(
    "/batches/{batch_id}",
    response_model=BatchStatus,
    tags=["Query"],
    summary="Progress of a batch",
    responses=responses(BatchNotFound),
)
async def batch_status(batch_id: BatchId, queries: QueryServiceDep) -> BatchStatus:
    """Counts by status and one item per image (status, error, defects)."""
    return await queries.batch_status(batch_id)


@router.post(
    "/batches/{batch_id}/retry",
    response_model=BatchRetried,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Retry every failed image of a batch now",
    responses=responses(BatchNotFound),
)
async def retry_batch(
    batch_id: BatchId, service: InspectionServiceDep, links: LinksDep
) -> BatchRetried:
    """Queues every failed image of the batch again, and moves the next attempt of images
    waiting for the model service to now. Progress: `GET /api/batches/{batch_id}`."""
    retried = await service.retry_batch(batch_id)
    return BatchRetried(
        batch_id=batch_id, retried=sorted(retried), status_url=links.batch(batch_id)
    )

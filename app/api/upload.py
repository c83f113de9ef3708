"""Upload routes: single image, batch, retry, batch progress."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, status

from app.api.deps import InspectionServiceDep, LinksDep, QueryServiceDep, RuntimeDep
from app.errors import (
    BadImage,
    BadUploadRequest,
    BatchNotFound,
    DuplicateInProgress,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    ImageNotFound,
    ImageTooLarge,
    ModelServiceBadAnswer,
    ModelServiceUnavailable,
    NotRetryable,
    UnsupportedImage,
    responses,
)
from app.models.schemas import (
    AcceptedFile,
    BatchAccepted,
    BatchStatus,
    BatchUploadResult,
    SkippedFile,
    UploadResponse,
)
from app.services.history.queries import upload_response
from app.services.inspection.idempotency import Answer, IdempotencyKeys, request_digest
from app.services.inspection.receiver import discard, receive_files

router = APIRouter(prefix="/api", tags=["Upload"])

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


def _multipart_body(field: str, many: bool) -> dict[str, Any]:
    file_schema: dict[str, Any] = {"type": "string", "format": "binary"}
    schema = {"type": "array", "items": file_schema} if many else file_schema
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [field],
                        "properties": {field: schema},
                    }
                }
            },
        }
    }


@router.post(
    "/upload",
    response_model=UploadResponse,
    summary="Inspect one image",
    openapi_extra=_multipart_body("image", many=False),
    responses=responses(
        BadImage,
        BadUploadRequest,
        UnsupportedImage,
        ImageTooLarge,
        ModelServiceBadAnswer,
        ModelServiceUnavailable,
        DuplicateInProgress,
        IdempotencyKeyInUse,
        IdempotencyKeyReused,
    ),
)
async def upload_image(
    request: Request,
    runtime: RuntimeDep,
    service: InspectionServiceDep,
    links: LinksDep,
    include_images: IncludeImages = None,
    skip_duplicates: SkipDuplicates = False,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Upload one JPEG, PNG, TIFF or BMP image (field `image`, at most MAX_FILE_SIZE_MB) and
    inspect it now. The image is kept and ledgered before inference: if the model service
    fails, the answer (503/502) names the `img_unique_id` to retry."""
    files = await receive_files(
        request,
        "image",
        runtime.storage.new_incoming_path,
        runtime.settings.max_file_size_bytes,
        max_files=1,
        fail_fast=True,
    )

    async def inspect() -> Answer:
        outcome = await service.inspect_upload(files[0], skip_duplicates=skip_duplicates)
        answer = upload_response(outcome, links, include_base64=include_images == "base64")
        return Answer.json(status.HTTP_200_OK, answer.model_dump(mode="json"))

    options = {"include_images": include_images, "skip_duplicates": skip_duplicates}
    settings = runtime.settings
    lease_s = settings.segformer_timeout_s * (settings.segformer_max_retries + 1) + 60
    try:
        answer = await IdempotencyKeys(runtime.sessions).answer(
            idempotency_key, request_digest("upload", options, files), lease_s, inspect
        )
    finally:
        await discard(files)
    return answer.response()


@router.post(
    "/upload/batch",
    response_model=BatchAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Inspect many images as a batch",
    openapi_extra=_multipart_body("images", many=True),
    responses={
        200: {
            "model": BatchUploadResult,
            "description": "With `wait=true`: every image done. With `skip_duplicates=true`"
            " and every usable file already inspected: nothing queued, `batch_id` null.",
        },
        **responses(BadImage, BadUploadRequest, IdempotencyKeyInUse, IdempotencyKeyReused),
    },
)
async def upload_batch(
    request: Request,
    runtime: RuntimeDep,
    service: InspectionServiceDep,
    links: LinksDep,
    queries: QueryServiceDep,
    wait: Annotated[
        bool, Query(description="Answer only when every image is done (200 with results).")
    ] = False,
    skip_duplicates: SkipDuplicates = False,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Upload up to MAX_BATCH_SIZE images (field `images`). Each usable file is stored,
    ledgered and queued; unusable ones are reported in `rejected`, already inspected ones
    (with `skip_duplicates=true`) in `skipped_duplicates`. Progress:
    `GET /api/batches/{batch_id}`."""
    files = await receive_files(
        request,
        "images",
        runtime.storage.new_incoming_path,
        runtime.settings.max_file_size_bytes,
        max_files=runtime.settings.max_batch_size,
        fail_fast=False,
    )

    async def accept() -> Answer:
        acceptance = await service.accept_batch(files, skip_duplicates=skip_duplicates)
        batch_id = acceptance.batch.batch_id if acceptance.batch is not None else None
        accepted = BatchAccepted(
            batch_id=batch_id,
            status_url=links.batch(batch_id) if batch_id else None,
            zip_url=links.batch_zip(batch_id) if batch_id else None,
            total=len(acceptance.accepted),
            accepted=[
                AcceptedFile(
                    filename=i.original_filename,
                    img_unique_id=i.img_unique_id,
                    repeat_of=i.repeat_of,
                )
                for i in acceptance.accepted
            ],
            rejected=acceptance.rejected,
            skipped_duplicates=[
                SkippedFile(
                    filename=s.filename,
                    img_unique_id=s.existing.img_unique_id,
                    earlier_filename=s.existing.original_filename,
                    status=s.existing.status.value,
                    batch_id=s.existing.batch_id,
                    viewer_url=links.viewer(s.existing.img_unique_id),
                )
                for s in acceptance.skipped
            ],
        )
        if batch_id is None:
            return Answer.json(status.HTTP_200_OK, accepted.model_dump(mode="json"))
        if not wait:
            return Answer.json(status.HTTP_202_ACCEPTED, accepted.model_dump(mode="json"))
        timeout_s = runtime.settings.segformer_timeout_s * max(1, len(acceptance.accepted))
        final = await queries.wait_for_batch(batch_id, timeout_s)
        body = BatchUploadResult(**accepted.model_dump(), status=final)
        return Answer.json(status.HTTP_200_OK, body.model_dump(mode="json"))

    options = {"wait": wait, "skip_duplicates": skip_duplicates}
    lease_s = 120 + (runtime.settings.segformer_timeout_s * len(files) if wait else 0)
    try:
        answer = await IdempotencyKeys(runtime.sessions).answer(
            idempotency_key, request_digest("upload_batch", options, files), lease_s, accept
        )
    finally:
        await discard(files)
    return answer.response()


@router.post(
    "/images/{img_unique_id}/retry",
    response_model=UploadResponse,
    summary="Inspect a failed image again",
    responses=responses(
        ImageNotFound, NotRetryable, ModelServiceBadAnswer, ModelServiceUnavailable
    ),
)
async def retry_image(
    img_unique_id: str,
    service: InspectionServiceDep,
    links: LinksDep,
    include_images: IncludeImages = None,
) -> UploadResponse:
    """Run inference again for an image whose inspection failed; its kept input is used."""
    outcome = await service.retry(img_unique_id)
    return upload_response(outcome, links, include_base64=include_images == "base64")


@router.get(
    "/batches/{batch_id}",
    response_model=BatchStatus,
    tags=["Query"],
    summary="Progress of a batch",
    responses=responses(BatchNotFound),
)
async def batch_status(batch_id: str, queries: QueryServiceDep) -> BatchStatus:
    """Counts by status and one item per image (status, error, defects)."""
    return await queries.batch_status(batch_id)

"""Pydantic request and response schemas of the agent's REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.models.context import InspectionContext
from app.models.review import EXAMPLE_IMAGE_REVIEW, EXAMPLE_REGION_REVIEW, ImageReview, RegionReview

ImageKind = Literal["input", "combined", "mask", "overlay"]
# What a batch image waiting to be tried again waits for.
WaitingFor = Literal["model_service", "storage"]

# Examples shown in the OpenAPI document, after the PRD's "API Examples".
EXAMPLE_ID = "20260225_103045_ABC123"
EXAMPLE_BATCH_ID = "B_20260225_103045_ABC123"
EXAMPLE_TIME = "2026-02-25T10:30:45Z"
_BASE = "http://localhost:8000/api"
EXAMPLE_URLS = {
    "combined": f"{_BASE}/download/image/{EXAMPLE_ID}/combined",
    "mask": f"{_BASE}/download/image/{EXAMPLE_ID}/mask",
    "overlay": f"{_BASE}/download/image/{EXAMPLE_ID}/overlay",
}
EXAMPLE_CLASSES = {"PI_Particle": 5, "PR_Peeling": 1, "Copper_Nodule": 1}
EXAMPLE_REGION = {
    "region_unique_id": 1041,
    "region_id": 1,
    "centroid": {"x": 1655.9, "y": 1508.0},
    "bounding_box": {"x": 1653, "y": 1506, "width": 7, "height": 5},
    "area_pixels": 14,
    "perimeter": 15.31,
    "major_axis": 6.2,
    "minor_axis": 4.2,
    "circularity": 0.75,
    "aspect_ratio": 1.47,
    "review": EXAMPLE_REGION_REVIEW,
}
EXAMPLE_SUMMARY = {
    "status": "succeeded",
    "img_unique_id": EXAMPLE_ID,
    "timestamp": EXAMPLE_TIME,
    "image_height": 1792,
    "image_width": 1792,
    "processing_time_seconds": 2.34,
    "total_defects": 7,
    "defect_classes": EXAMPLE_CLASSES,
    "input_image_path": f"uploads/20260225/{EXAMPLE_ID}_input.jpeg",
    "batch_id": None,
    "original_filename": "segformer_input.jpeg",
    "thumbnail_url": f"{_BASE}/images/{EXAMPLE_ID}/thumbnail",
    "viewer_url": f"http://localhost:8000/results/{EXAMPLE_ID}",
    "review": {
        "state": "unreviewed",
        "regions": 7,
        "reviewed_regions": 3,
        "false_calls": 1,
        "disposition": None,
    },
}
EXAMPLE_CLASS_ROW = {
    "class_unique_id": 311,
    "class_id": 1,
    "class_name": "PI_Particle",
    "total_regions": 5,
    "total_area_pixels": 88,
}
EXAMPLE_UPLOAD = {
    "success": True,
    "img_unique_id": EXAMPLE_ID,
    "timestamp": EXAMPLE_TIME,
    "processing_time_seconds": 2.34,
    "total_defects": 7,
    "defect_classes": EXAMPLE_CLASSES,
    "images": EXAMPLE_URLS,
    "input_url": f"{_BASE}/download/image/{EXAMPLE_ID}/input",
    "json_url": f"{_BASE}/download/json/{EXAMPLE_ID}",
    "viewer_url": f"http://localhost:8000/results/{EXAMPLE_ID}",
    "result": {"image_shape": [1792, 1792], "total_defects": 7, "classes": {"...": "..."}},
    "images_base64": None,
    "model_service_seconds": 2.41,
    "agent_total_seconds": 2.52,
}
EXAMPLE_BATCH_ITEM = {
    "img_unique_id": EXAMPLE_ID,
    "filename": "board_017.jpg",
    "status": "succeeded",
    "attempts": 1,
    "error": None,
    "total_defects": 7,
    "defect_classes": EXAMPLE_CLASSES,
    "processing_time_seconds": 2.34,
    "agent_total_seconds": 2.61,
    "viewer_url": f"http://localhost:8000/results/{EXAMPLE_ID}",
    "overlay_url": EXAMPLE_URLS["overlay"],
    "retry_url": None,
}
EXAMPLE_REJECTED = {
    "filename": "notes.txt",
    "error": "unsupported_media_type",
    "detail": "'notes.txt' is not a JPEG, PNG, TIFF or BMP image by its content",
}
EXAMPLE_BATCH_STATUS = {
    "batch_id": EXAMPLE_BATCH_ID,
    "created_at": EXAMPLE_TIME,
    "total": 1,
    "succeeded": 1,
    "failed": 0,
    "pending": 0,
    "processing": 0,
    "done": True,
    "rejected_files": 1,
    "waiting_for_model_service": 0,
    "waiting_for_storage": 0,
    "next_attempt_at": None,
    "message": None,
    "retry_url": f"{_BASE}/api/batches/{EXAMPLE_BATCH_ID}/retry",
    "defects_by_class": EXAMPLE_CLASSES,
    "zip_url": f"{_BASE}/download/batch/{EXAMPLE_BATCH_ID}",
    "items": [EXAMPLE_BATCH_ITEM],
}
EXAMPLE_DEFECT_ROW = {
    **EXAMPLE_REGION,
    "img_unique_id": EXAMPLE_ID,
    "timestamp": EXAMPLE_TIME,
    "class_name": "PI_Particle",
    "class_id": 1,
}
EXAMPLE_BATCH_ACCEPTED = {
    "batch_id": EXAMPLE_BATCH_ID,
    "status_url": f"{_BASE}/batches/{EXAMPLE_BATCH_ID}",
    "zip_url": f"{_BASE}/download/batch/{EXAMPLE_BATCH_ID}",
    "total": 1,
    "accepted": [{"filename": "board_017.jpg", "img_unique_id": EXAMPLE_ID}],
    "rejected": [EXAMPLE_REJECTED],
}


def _example(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]})


class FieldProblem(BaseModel):
    """One reason a request was refused with 422: where, what, and which rule."""

    model_config = _example(
        {
            "loc": ["query", "page"],
            "msg": "Input should be less than or equal to 1000000",
            "type": "less_than_equal",
        }
    )

    loc: list[str] = Field(examples=[["query", "page"]])
    msg: str = Field(examples=["Input should be less than or equal to 1000000"])
    type: str = Field(examples=["less_than_equal"])


class ErrorBody(BaseModel):
    """Every error answer: a machine-readable code, a message for the user, and the
    request's id (also in the `X-Request-ID` header; the agent's logs carry the same id).
    Some errors add fields: `errors` (422), `img_unique_id` and `retry_url` (an upload
    whose inference failed: its input was kept), `rejected` (a batch with no usable file)."""

    model_config = _example(
        {
            "error": "unsupported_media_type",
            "detail": "'notes.png' is not a JPEG, PNG, TIFF or BMP image by its content",
            "request_id": "0f8e5c2b9a7d4e61b3c2a1d0e9f8a7b6",
        }
    )

    error: str = Field(examples=["unsupported_media_type"])
    detail: str = Field(
        examples=["'notes.png' is not a JPEG, PNG, TIFF or BMP image by its content"]
    )
    request_id: str | None = Field(examples=["0f8e5c2b9a7d4e61b3c2a1d0e9f8a7b6"])
    errors: list[FieldProblem] | None = Field(
        default=None, description="With 422: one entry per refused parameter."
    )
    img_unique_id: str | None = Field(
        default=None, description="With 502/503/507 of an upload: the inspection to retry."
    )
    retry_url: str | None = Field(
        default=None, examples=["/api/images/20260225_103045_ABC123/retry"]
    )
    rejected: list[RejectedFile] | None = Field(
        default=None, description="With a batch of which no file is usable: why, per file."
    )


class ValidationErrorBody(ErrorBody):
    """A 422 answer: a parameter or the body is malformed; `errors` lists each problem."""

    model_config = _example(
        {
            "error": "invalid_request",
            "detail": "limit: Input should be less than or equal to 100",
            "request_id": "5d1c0a9e8b7f4a3c2e1d0f9a8b7c6d5e",
            "errors": [
                {
                    "type": "less_than_equal",
                    "loc": ["query", "limit"],
                    "msg": "Input should be less than or equal to 100",
                    "input": "101",
                    "ctx": {"le": 100},
                }
            ],
        }
    )


class ResultImageUrls(BaseModel):
    """Download URLs of the three result images."""

    model_config = _example(EXAMPLE_URLS)

    combined: str
    mask: str
    overlay: str


class ResultImagesBase64(BaseModel):
    """The three result PNGs, base64-encoded (only with `?include_images=base64`)."""

    model_config = _example(
        {"combined": "iVBORw0KGgoAAAANSUhEUg...", "mask": "iVBORw0KGgo...", "overlay": "iVBO..."}
    )

    combined: str
    mask: str
    overlay: str


class UploadResponse(BaseModel):
    """The answer to a successful single-image inspection (the PRD's example, plus `result`).

    `processing_time_seconds` is the model service's own inference time (as in the PRD and
    the `images` table); `model_service_seconds` the agent's round trip to it and
    `agent_total_seconds` the agent's whole pipeline for this image.
    """

    model_config = _example(EXAMPLE_UPLOAD)

    success: bool = True
    img_unique_id: str = Field(examples=["20260225_103045_ABC123"])
    timestamp: datetime
    processing_time_seconds: float = Field(
        description="The model service's inference time, seconds (as the PRD defines it)."
    )
    total_defects: int
    defect_classes: dict[str, int] = Field(examples=[{"spurious_copper": 2, "pin_hole": 1}])
    images: ResultImageUrls
    input_url: str
    json_url: str
    viewer_url: str
    result: dict[str, Any] = Field(description="The model service's analysis JSON, as stored.")
    images_base64: ResultImagesBase64 | None = None
    model_service_seconds: float | None = Field(
        default=None, description="The agent's round trip to the model service, seconds."
    )
    agent_total_seconds: float | None = Field(
        default=None,
        description="The agent's whole pipeline for this image (accept, infer, store), seconds.",
    )
    input_sha256: str | None = Field(
        default=None, description="Hex SHA-256 of the input image's bytes."
    )
    repeat_of: str | None = Field(
        default=None,
        description="The first earlier inspection of the same bytes, when this one re-tested"
        " them (null for the first).",
    )
    skipped_duplicate: bool = Field(
        default=False,
        description="True when `skip_duplicates=true` answered with this earlier inspection"
        " of the same bytes instead of inspecting them again.",
    )
    context: InspectionContext | None = Field(
        default=None,
        description="The board context sent with the image (serial, product, line, side,"
        " lot...; see docs/boards.md), null when none was sent.",
    )


class RejectedFile(BaseModel):
    """A file of a batch that was not accepted, and why."""

    model_config = _example(EXAMPLE_REJECTED)

    filename: str
    error: str
    detail: str


class AcceptedFile(BaseModel):
    """A file of a batch that was stored and queued."""

    model_config = _example({"filename": "board_017.jpg", "img_unique_id": EXAMPLE_ID})

    filename: str
    img_unique_id: str
    repeat_of: str | None = Field(
        default=None, description="The first earlier inspection of the same bytes, if any."
    )


class SkippedFile(BaseModel):
    """A file of a batch not inspected because its bytes already were (`skip_duplicates`)."""

    model_config = _example(
        {
            "filename": "board_017_again.jpg",
            "img_unique_id": "20260225_103045_ABC123",
            "earlier_filename": "board_017.jpg",
            "status": "succeeded",
            "batch_id": "B_20260225_103045_ABC123",
            "viewer_url": "http://localhost:8000/results/20260225_103045_ABC123",
        }
    )

    filename: str
    img_unique_id: str = Field(description="The earlier inspection of the same bytes.")
    earlier_filename: str = Field(description="The file name of that earlier inspection.")
    status: Literal["pending", "processing", "succeeded"]
    batch_id: str | None
    viewer_url: str


class BatchItem(BaseModel):
    """One image of a batch and where it stands (timings in seconds, as in `UploadResponse`)."""

    model_config = _example(EXAMPLE_BATCH_ITEM)

    img_unique_id: str
    filename: str
    status: Literal["pending", "processing", "succeeded", "failed"]
    attempts: int
    error: str | None = None
    total_defects: int | None = None
    defect_classes: dict[str, int] | None = None
    processing_time_seconds: float | None = Field(
        default=None, description="The model service's inference time, seconds."
    )
    agent_total_seconds: float | None = Field(
        default=None, description="The agent's whole pipeline for this image, seconds."
    )
    viewer_url: str
    overlay_url: str | None = None
    retry_url: str | None = None
    next_attempt_at: datetime | None = Field(
        default=None,
        description="Waiting for the model service or the store (status `pending`): when it"
        " is tried next.",
    )
    waiting_for: WaitingFor | None = Field(
        default=None, description="What it waits for, when `next_attempt_at` is set."
    )
    repeat_of: str | None = None


class BatchStatus(BaseModel):
    """Progress of a batch: counts by status and one item per accepted image."""

    model_config = _example(EXAMPLE_BATCH_STATUS)

    batch_id: str
    created_at: datetime
    total: int
    succeeded: int
    failed: int
    pending: int = Field(description="Queued or being processed.")
    processing: int
    done: bool
    rejected_files: int
    waiting_for_model_service: int = Field(
        default=0, description="Images that could not reach the model service, to be retried."
    )
    waiting_for_storage: int = Field(
        default=0,
        description="Images the object store could not take or give (down, or refusing the"
        " agent), to be retried.",
    )
    next_attempt_at: datetime | None = Field(
        default=None, description="The earliest automatic retry of those images."
    )
    message: str | None = Field(
        default=None,
        description="What the batch is waiting for, in a sentence.",
        examples=["waiting for model service, next attempt at 2026-02-25 10:31:15 UTC"],
    )
    retry_url: str = Field(description="`POST` it to retry every failed image now.")
    defects_by_class: dict[str, int]
    zip_url: str
    items: list[BatchItem]


class BatchRetried(BaseModel):
    """The answer to a batch retry: the images queued again now."""

    model_config = _example(
        {
            "batch_id": "B_20260225_103045_ABC123",
            "retried": ["20260225_103045_ABC124", "20260225_103045_ABC125"],
            "status_url": "http://127.0.0.1:8000/api/batches/B_20260225_103045_ABC123",
        }
    )

    batch_id: str = Field(examples=["B_20260225_103045_ABC123"])
    retried: list[str] = Field(
        description="Failed or waiting images queued again now.",
        examples=[["20260225_103045_ABC124", "20260225_103045_ABC125"]],
    )
    status_url: str = Field(examples=["http://127.0.0.1:8000/api/batches/B_20260225_103045_ABC123"])


class BatchAccepted(BaseModel):
    """The answer to a batch upload: what was accepted and queued, what was rejected, and
    (with `skip_duplicates=true`) what was skipped as already inspected. `batch_id` and its
    URLs are null when every usable file was skipped (nothing was queued)."""

    model_config = _example(EXAMPLE_BATCH_ACCEPTED)

    batch_id: str | None
    status_url: str | None
    zip_url: str | None
    total: int
    accepted: list[AcceptedFile]
    rejected: list[RejectedFile]
    skipped_duplicates: list[SkippedFile] = Field(default_factory=list)


class BatchImageSucceeded(UploadResponse):
    """One inspected image of a batch: the single-upload answer plus its file name."""

    model_config = _example({**EXAMPLE_UPLOAD, "filename": "board_017.jpg"})

    success: Literal[True] = True
    filename: str


class BatchImageFailed(BaseModel):
    """One image of a batch without a result: its error as a single upload would give it
    (`error`, `detail`), or `not_finished` when the wait ended first."""

    model_config = _example(
        {
            "success": False,
            "filename": "board_018.jpg",
            "img_unique_id": "20260225_103045_DEF456",
            "status": "failed",
            "error": "model_service_unavailable",
            "detail": "the model service at http://140.96.77.124:8080/ did not answer",
            "retry_url": "http://localhost:8000/api/images/20260225_103045_DEF456/retry",
        }
    )

    success: Literal[False] = False
    filename: str
    img_unique_id: str
    status: Literal["pending", "processing", "failed"]
    error: str
    detail: str
    retry_url: str | None = None


class BatchUploadResult(BatchAccepted):
    """The answer to `?wait=true` (the PRD's FR4.2): the acceptance, the batch summary
    (`status`) and `results`, one per accepted image in upload order."""

    model_config = _example(
        {
            **EXAMPLE_BATCH_ACCEPTED,
            "status": EXAMPLE_BATCH_STATUS,
            "results": [{**EXAMPLE_UPLOAD, "filename": "board_017.jpg"}],
        }
    )

    status: BatchStatus | None = Field(
        default=None,
        description="The batch summary; null when nothing was queued (`skip_duplicates=true`"
        " and every usable file already inspected).",
    )
    results: list[BatchImageSucceeded | BatchImageFailed] = Field(
        default_factory=list,
        description="Per accepted image, in upload order: the single-upload answer, or its error.",
    )


class ImageReviewState(BaseModel):
    """Where one board's review stands (the `review_state` filter's terms)."""

    model_config = _example(
        {
            "state": "unreviewed",
            "regions": 5,
            "reviewed_regions": 3,
            "false_calls": 1,
            "disposition": None,
        }
    )

    state: Literal["unreviewed", "reviewed"] | None = Field(
        description="`unreviewed`: a region has no verdict; `reviewed`: every region has"
        " one; null: the board has no region (nothing to review)."
    )
    regions: int = Field(description="Defect regions of the image.")
    reviewed_regions: int = Field(description="Of them, those with a verdict.")
    false_calls: int = Field(description="Of them, those judged `false_call`.")
    disposition: Literal["pass", "repair", "scrap"] | None = Field(
        default=None, description="The board's current disposition (null: none)."
    )


class ImageSummary(BaseModel):
    """One inspected image in a listing."""

    model_config = _example(EXAMPLE_SUMMARY)

    status: Literal["succeeded"] = "succeeded"
    img_unique_id: str
    timestamp: datetime
    image_height: int
    image_width: int
    processing_time_seconds: float = Field(
        description="The model service's inference time, seconds."
    )
    total_defects: int
    defect_classes: dict[str, int]
    input_image_path: str
    batch_id: str | None = None
    original_filename: str | None = None
    thumbnail_url: str
    viewer_url: str
    review: ImageReviewState | None = Field(
        default=None, description="Its review's progress and disposition (in `/images`)."
    )


class InspectionState(BaseModel):
    """An accepted image with no stored result (yet): where it stands, why it failed, and
    the URL that retries it (`POST`, failed ones only)."""

    model_config = _example(
        {
            "status": "failed",
            "img_unique_id": "20260225_103045_ABC123",
            "timestamp": "2026-02-25T10:30:45Z",
            "updated_at": "2026-02-25T10:31:47Z",
            "original_filename": "board_017.jpg",
            "batch_id": None,
            "attempts": 1,
            "error": "model service at http://140.96.77.124:8080/ is unreachable after 3 attempts",
            "error_status_code": 503,
            "next_attempt_at": None,
            "input_url": "http://localhost:8000/download/image/20260225_103045_ABC123/input",
            "retry_url": "http://localhost:8000/api/images/20260225_103045_ABC123/retry",
        }
    )

    status: Literal["pending", "processing", "failed"]
    img_unique_id: str = Field(examples=["20260225_103045_ABC123"])
    timestamp: datetime = Field(description="When the agent accepted the image, UTC.")
    updated_at: datetime
    original_filename: str
    batch_id: str | None = None
    attempts: int = Field(description="Inference attempts so far.")
    error: str | None = Field(
        default=None,
        description="Why the last attempt failed (also while waiting for the model service).",
        examples=["model service at http://140.96.77.124:8080/ is unreachable after 3 attempts"],
    )
    error_status_code: int | None = Field(default=None, examples=[503])
    next_attempt_at: datetime | None = Field(
        default=None,
        description="A batch image waiting for the model service or the store: when it is"
        " tried next.",
    )
    waiting_for: WaitingFor | None = Field(
        default=None, description="What it waits for, when `next_attempt_at` is set."
    )
    input_url: str
    retry_url: str | None = Field(default=None, description="`POST` it to inspect again.")


ListedImage = Annotated[ImageSummary | InspectionState, Field(discriminator="status")]


TOTAL_TEXT = (
    "Rows matching the filters, over all pages. Exact when `total_is_exact`; otherwise"
    " PostgreSQL's estimate (more than 10,000 rows matched and no rollup gives the"
    " number for these filters)."
)
TOTAL_IS_EXACT_TEXT = (
    "Whether `total` is an exact count (true) or an estimate of over 10,000 rows (false)."
)
PAGE_TEXT = "The page number asked for; null when the page was asked for by `cursor`."
NEXT_CURSOR_TEXT = (
    "Pass as `cursor` (with the same filters) for the next page; null on the last page."
    " Keyset paging: every page costs the same, however deep."
)


class ImageList(BaseModel):
    """A page of images of one status, newest first: inspected ones (`succeeded`, the
    default) with their defects, or ledger rows (`failed`, `pending`, `processing`) with
    their error and retry URL."""

    model_config = _example(
        {
            "total": 145,
            "total_is_exact": True,
            "page": 1,
            "limit": 10,
            "next_cursor": "WzEsInN1Y2NlZWRlZCIsIjIwMjYtMDItMjVUMTA6MzA6NDUrMDA6MDAiLCIy"
            "MDI2MDIyNV8xMDMwNDVfQUJDMTIzIl0",
            "images": [EXAMPLE_SUMMARY],
        }
    )

    total: int = Field(description=TOTAL_TEXT)
    total_is_exact: bool = Field(default=True, description=TOTAL_IS_EXACT_TEXT)
    page: int | None = Field(description=PAGE_TEXT)
    limit: int
    status: Literal["pending", "processing", "succeeded", "failed"] = "succeeded"
    next_cursor: str | None = Field(default=None, description=NEXT_CURSOR_TEXT)
    images: list[ListedImage]


class DefectClassOut(BaseModel):
    """One defect class found in an image."""

    model_config = _example(EXAMPLE_CLASS_ROW)

    class_unique_id: int
    class_id: int
    class_name: str
    total_regions: int
    total_area_pixels: int


class Provenance(BaseModel):
    """Which model service, model and agent produced a result (null where unknown: the
    service reported no name or version, or the result predates migration 20261122_0006)."""

    model_config = _example(
        {
            "model_service_url": "http://140.96.77.124:8080/",
            "model_name": "segformer-b2-pcb",
            "model_version": "2026.02.1",
            "agent_version": "0.1.0",
        }
    )

    model_service_url: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    agent_version: str | None = None


class ImageDetail(ImageSummary):
    """One inspected image with its classes, stored paths and download URLs."""

    model_config = _example(
        {
            **EXAMPLE_SUMMARY,
            "result_image_1_path": f"results/20260225/{EXAMPLE_ID}/combined.png",
            "result_image_2_path": f"results/20260225/{EXAMPLE_ID}/mask.png",
            "result_image_3_path": f"results/20260225/{EXAMPLE_ID}/overlay.png",
            "classes": [EXAMPLE_CLASS_ROW],
            "images": EXAMPLE_URLS,
            "input_url": EXAMPLE_UPLOAD["input_url"],
            "json_url": EXAMPLE_UPLOAD["json_url"],
            "provenance": {
                "model_service_url": "http://140.96.77.124:8080/",
                "model_name": "segformer-b2-pcb",
                "model_version": "2026.02.1",
                "agent_version": "0.1.0",
            },
            "disposition": EXAMPLE_IMAGE_REVIEW,
        }
    )

    result_image_1_path: str | None
    result_image_2_path: str | None
    result_image_3_path: str | None
    classes: list[DefectClassOut]
    images: ResultImageUrls
    input_url: str
    json_url: str
    input_sha256: str | None = None
    repeat_of: str | None = Field(
        default=None, description="The first earlier inspection of the same bytes, if any."
    )
    provenance: Provenance = Field(
        default_factory=Provenance,
        description="The model service, model name and version, and agent that produced it.",
    )
    disposition: ImageReview | None = Field(
        default=None, description="The board's review disposition (null: none yet)."
    )
    context: InspectionContext | None = Field(
        default=None,
        description="The board context sent with the image (serial, product, line, side,"
        " lot...; see docs/boards.md), null when none was sent.",
    )


ImageOrInspection = Annotated[ImageDetail | InspectionState, Field(discriminator="status")]


class PointOut(BaseModel):
    """A position in pixels."""

    model_config = _example({"x": 1655.9, "y": 1508.0})

    x: float
    y: float


class BoundingBoxOut(BaseModel):
    """Top-left corner and size, in pixels."""

    model_config = _example({"x": 1653, "y": 1506, "width": 7, "height": 5})

    x: int
    y: int
    width: int
    height: int


class RegionOut(BaseModel):
    """One defect region: geometry in pixels, shape descriptors unitless."""

    model_config = _example(EXAMPLE_REGION)

    region_unique_id: int
    region_id: int
    centroid: PointOut
    bounding_box: BoundingBoxOut
    area_pixels: int
    perimeter: float
    major_axis: float
    minor_axis: float
    circularity: float
    aspect_ratio: float
    review: RegionReview | None = Field(
        default=None, description="The reviewer's verdict on this region (null: not reviewed)."
    )


class ClassRegions(BaseModel):
    """The regions of one defect class."""

    model_config = _example(
        {
            "class_name": "PI_Particle",
            "class_id": 1,
            "total_regions": 1,
            "total_area_pixels": 14,
            "regions": [EXAMPLE_REGION],
        }
    )

    class_name: str
    class_id: int
    total_regions: int
    total_area_pixels: int
    regions: list[RegionOut]


class ImageRegions(BaseModel):
    """All regions of an image grouped by class (the PRD's example)."""

    model_config = _example(
        {
            "img_unique_id": EXAMPLE_ID,
            "image_height": 1792,
            "image_width": 1792,
            "total_regions": 1,
            "classes": [
                {
                    "class_name": "PI_Particle",
                    "class_id": 1,
                    "total_regions": 1,
                    "total_area_pixels": 14,
                    "regions": [EXAMPLE_REGION],
                }
            ],
        }
    )

    img_unique_id: str
    image_height: int
    image_width: int
    total_regions: int
    classes: list[ClassRegions]


class DefectRow(RegionOut):
    """A region found by `/api/query/defects`, with its image and class."""

    model_config = _example(EXAMPLE_DEFECT_ROW)

    img_unique_id: str
    timestamp: datetime
    class_name: str
    class_id: int


class DefectQueryResult(BaseModel):
    """A page of defect regions."""

    model_config = _example(
        {
            "total": 1,
            "total_is_exact": True,
            "page": 1,
            "limit": 50,
            "next_cursor": None,
            "regions": [EXAMPLE_DEFECT_ROW],
        }
    )

    total: int = Field(description=TOTAL_TEXT)
    total_is_exact: bool = Field(default=True, description=TOTAL_IS_EXACT_TEXT)
    page: int | None = Field(description=PAGE_TEXT)
    limit: int
    next_cursor: str | None = Field(default=None, description=NEXT_CURSOR_TEXT)
    regions: list[DefectRow]


class ComponentHealth(BaseModel):
    """Whether one dependency answers."""

    model_config = _example({"ok": True, "detail": None})

    ok: bool
    detail: str | None = None


class StorageHealth(BaseModel):
    """Whether the store of inputs and results (STORAGE_URL) answers."""

    model_config = _example(
        {"ok": True, "detail": None, "backend": "s3", "location": "s3://aoi-images/plant-1"}
    )

    ok: bool
    detail: str | None = None
    backend: Literal["local", "s3"] = Field(description="`local` (a folder) or `s3`.")
    location: str = Field(description="The folder, or `s3://bucket/prefix`.")
    state: Literal["ok", "unavailable", "misconfigured"] = Field(
        default="ok",
        description="`unavailable`: down or overloaded (uploads get 503, batch images wait"
        " and resume by themselves); `misconfigured`: the bucket is missing or the"
        " credentials are refused (an operator must fix it; `detail` says what).",
    )


class LastInference(BaseModel):
    """How the agent's last inference ended (this process, since it started)."""

    model_config = _example(
        {"ok": True, "at": "2026-02-25T10:30:45Z", "detail": None, "seconds": 1.42}
    )

    ok: bool = Field(description="The model service did its job (or refused a bad file).")
    at: datetime = Field(examples=["2026-02-25T10:30:45Z"])
    detail: str | None = Field(
        default=None,
        examples=["model service at http://140.96.77.124:8080/ is unreachable after 3 attempts"],
    )
    seconds: float = Field(description="How long the call took, seconds.", examples=[1.42])


class ModelServiceHealth(ComponentHealth):
    """The model service: its contract's health probe and the last real inference."""

    model_config = _example({"ok": True, "detail": None, "url": "http://140.96.77.124:8080/"})

    url: str
    last_inference: LastInference | None = None


class ModelServiceInstance(ModelServiceHealth):
    """One model service of SEGFORMER_SERVICE_URLS, as this agent process sees it."""

    model_config = _example(
        {
            "ok": True,
            "detail": "health check passed (engine classical)",
            "url": "http://gpu-1:8080/",
            "taking_requests": True,
            "in_flight": 2,
            "max_concurrency": 4,
            "requests": 1532,
            "back_in_seconds": None,
        }
    )

    taking_requests: bool = Field(
        description="False while the service is left out after failing (it is probed"
        " back in when its back-off ends)."
    )
    in_flight: int = Field(description="Inference requests in flight to it now.")
    max_concurrency: int = Field(description="Its limit of requests in flight.")
    requests: int = Field(description="Inference requests sent to it since the agent started.")
    back_in_seconds: float | None = Field(
        default=None,
        description="While left out: seconds until it is probed again.",
        examples=[4.2],
    )


class DiskHealth(BaseModel):
    """Free space where the agent keeps its files, in bytes."""

    model_config = _example(
        {
            "path": "/srv/aoi/data",
            "free_bytes": 412316860416,
            "total_bytes": 999653638144,
            "ok": True,
        }
    )

    path: str
    free_bytes: int
    total_bytes: int
    ok: bool
    min_free_bytes: int = Field(default=0, description="MIN_FREE_DISK_MB, in bytes.")
    accepting_uploads: bool = Field(
        default=True, description="False while free space is below MIN_FREE_DISK_MB (507)."
    )
    detail: str | None = None


class HealthStatus(BaseModel):
    """`ok` when every part answers, `degraded` when the model service does not, else `down`."""

    model_config = _example(
        {
            "status": "ok",
            "database": {"ok": True, "detail": None},
            "model_service": {"ok": True, "detail": None, "url": "http://140.96.77.124:8080/"},
            "storage": {"ok": True, "backend": "local", "location": "/srv/aoi/data"},
            "disk": {
                "path": "/srv/aoi/data",
                "free_bytes": 412316860416,
                "total_bytes": 999653638144,
                "ok": True,
            },
            "version": "0.1.0",
        }
    )

    status: Literal["ok", "degraded", "down"]
    detail: str | None = Field(
        default=None,
        description="What is wrong, in a sentence, when the status is not `ok`.",
        examples=["the model service fails: GET http://140.96.77.124:8080/health failed"],
    )
    database: ComponentHealth
    model_service: ModelServiceHealth
    model_services: list[ModelServiceInstance] = Field(
        default_factory=list,
        description="Each model service of SEGFORMER_SERVICE_URLS (one entry for a single"
        " SEGFORMER_SERVICE_URL); `model_service` sums them up: ok while one works.",
    )
    storage: StorageHealth
    disk: DiskHealth
    outbox: OutboxHealth | None = Field(
        default=None,
        description="The IPC-CFX outbox (docs/cfx.md); null when CFX_BROKER_URL is unset.",
    )
    webhooks: WebhookHealth | None = Field(
        default=None,
        description="Webhook deliveries (docs/webhooks.md); null when no endpoint is enabled.",
    )
    version: str


class OutboxHealth(BaseModel):
    """Messages waiting for the IPC-CFX broker: `ok` unless the oldest has waited more
    than a minute (the broker is down or refuses them; they are kept and sent later)."""

    model_config = _example({"ok": True, "backlog_messages": 3, "oldest_age_s": 0.4})

    ok: bool
    detail: str | None = None
    backlog_messages: int = Field(description="Messages written and not yet published.")
    oldest_age_s: float | None = Field(
        description="Seconds the oldest unpublished message has waited; null when none."
    )


class WebhookHealth(BaseModel):
    """Webhook events not yet delivered: `ok` unless the oldest has waited more than 5
    minutes (a receiver is down or refuses them; they are retried for
    WEBHOOK_RETRY_HOURS, then parked)."""

    model_config = _example({"ok": True, "backlog_events": 2, "oldest_age_s": 0.3})

    ok: bool
    detail: str | None = None
    backlog_events: int = Field(
        description="Pending deliveries plus events not yet fanned out to endpoints."
    )
    oldest_age_s: float | None = Field(
        description="Seconds the oldest of them has waited; null when none."
    )


class Liveness(BaseModel):
    """A liveness or readiness answer: `ok`, or `down` (readiness, with 503)."""

    model_config = _example({"status": "ok"})

    status: Literal["ok", "down"] = Field(examples=["ok"])


class ClassStats(BaseModel):
    """How often one defect class was found."""

    model_config = _example(
        {"class_name": "PI_Particle", "images": 96, "regions": 412, "total_area_pixels": 7311}
    )

    class_name: str
    images: int
    regions: int
    total_area_pixels: int


class Stats(BaseModel):
    """Totals over every inspection; times in seconds, as in `UploadResponse`."""

    model_config = _example(
        {
            "total_images": 145,
            "total_defects": 1015,
            "inspections_failed": 2,
            "inspections_pending": 0,
            "total_batches": 6,
            "mean_processing_time_seconds": 2.31,
            "mean_model_service_seconds": 2.4,
            "mean_agent_total_seconds": 2.5,
            "defects_by_class": [
                {
                    "class_name": "PI_Particle",
                    "images": 96,
                    "regions": 412,
                    "total_area_pixels": 7311,
                }
            ],
            "recent_uploads": [EXAMPLE_SUMMARY],
            "recent_failures": [],
        }
    )

    total_images: int
    total_defects: int
    inspections_failed: int
    inspections_pending: int
    total_batches: int
    mean_processing_time_seconds: float | None = Field(
        description="Mean model-service inference time of stored images, seconds."
    )
    mean_model_service_seconds: float | None = Field(
        description="Mean round trip of the agent to the model service, seconds."
    )
    mean_agent_total_seconds: float | None = Field(
        description="Mean of the agent's whole pipeline per image, seconds."
    )
    defects_by_class: list[ClassStats]
    recent_uploads: list[ImageSummary]
    recent_failures: list[BatchItem]


class ApiKeyCreate(BaseModel):
    """A new API key's name and scope."""

    model_config = _example({"name": "line-3", "scope": "write"})

    name: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", examples=["line-3"]
    )
    scope: Literal["read", "write", "admin"] = Field(examples=["write"])


class ApiKeyOut(BaseModel):
    """An API key as listed: never the key itself, only its visible prefix."""

    model_config = _example(
        {
            "name": "line-3",
            "prefix": "aoi_3f9c02ab",
            "scope": "write",
            "created_at": "2026-02-25T10:30:45Z",
            "last_used_at": "2026-02-25T11:02:10Z",
            "revoked_at": None,
        }
    )

    name: str = Field(examples=["line-3"])
    prefix: str = Field(examples=["aoi_3f9c02ab"])
    scope: Literal["read", "write", "admin"]
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyOut):
    """A key just created, with the key itself: shown this once, store it now."""

    model_config = _example(
        {
            "name": "line-3",
            "prefix": "aoi_3f9c02ab",
            "scope": "write",
            "created_at": "2026-02-25T10:30:45Z",
            "last_used_at": None,
            "revoked_at": None,
            "key": "aoi_3f9c02ab_Jx0d2mQ7vL9pR4sT1uW8yZ3bC6eF5gH0iK2nM4oP7qS",
        }
    )

    key: str = Field(examples=["aoi_3f9c02ab_Jx0…"])

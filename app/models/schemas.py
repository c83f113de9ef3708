"""Pydantic request and response schemas of the agent's REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

ImageKind = Literal["input", "combined", "mask", "overlay"]


class ErrorBody(BaseModel):
    """Every error answer: a machine-readable code and a message for the user."""

    error: str = Field(examples=["unsupported_media_type"])
    detail: str = Field(
        examples=["'notes.png' is not a JPEG, PNG, TIFF or BMP image (it starts with 'hello')"]
    )


class ResultImageUrls(BaseModel):
    """Download URLs of the three result images."""

    combined: str
    mask: str
    overlay: str


class ResultImagesBase64(BaseModel):
    """The three result PNGs, base64-encoded (only with `?include_images=base64`)."""

    combined: str
    mask: str
    overlay: str


class UploadResponse(BaseModel):
    """The answer to a successful single-image inspection (the PRD's example, plus `result`)."""

    success: bool = True
    img_unique_id: str = Field(examples=["20260225_103045_ABC123"])
    timestamp: datetime
    processing_time_seconds: float = Field(description="Model inference time, seconds.")
    total_defects: int
    defect_classes: dict[str, int] = Field(examples=[{"spurious_copper": 2, "pin_hole": 1}])
    images: ResultImageUrls
    input_url: str
    json_url: str
    viewer_url: str
    result: dict[str, Any] = Field(description="The model service's analysis JSON, as stored.")
    images_base64: ResultImagesBase64 | None = None
    model_service_seconds: float | None = Field(
        default=None, description="Round trip to the model service, seconds."
    )
    total_seconds: float | None = Field(
        default=None, description="The agent's whole pipeline for this image, seconds."
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


class RejectedFile(BaseModel):
    """A file of a batch that was not accepted, and why."""

    filename: str
    error: str
    detail: str


class AcceptedFile(BaseModel):
    """A file of a batch that was stored and queued."""

    filename: str
    img_unique_id: str
    repeat_of: str | None = Field(
        default=None, description="The first earlier inspection of the same bytes, if any."
    )


class SkippedFile(BaseModel):
    """A file of a batch not inspected because its bytes already were (`skip_duplicates`)."""

    filename: str
    img_unique_id: str = Field(description="The earlier inspection of the same bytes.")
    earlier_filename: str = Field(description="The file name of that earlier inspection.")
    status: Literal["pending", "processing", "succeeded"]
    batch_id: str | None
    viewer_url: str


class BatchItem(BaseModel):
    """One image of a batch and where it stands."""

    img_unique_id: str
    filename: str
    status: Literal["pending", "processing", "succeeded", "failed"]
    attempts: int
    error: str | None = None
    total_defects: int | None = None
    defect_classes: dict[str, int] | None = None
    processing_time_seconds: float | None = None
    viewer_url: str
    overlay_url: str | None = None
    retry_url: str | None = None
    repeat_of: str | None = None


class BatchStatus(BaseModel):
    """Progress of a batch: counts by status and one item per accepted image."""

    batch_id: str
    created_at: datetime
    total: int
    succeeded: int
    failed: int
    pending: int = Field(description="Queued or being processed.")
    processing: int
    done: bool
    rejected_files: int
    defects_by_class: dict[str, int]
    zip_url: str
    items: list[BatchItem]


class BatchAccepted(BaseModel):
    """The answer to a batch upload: what was accepted and queued, what was rejected, and
    (with `skip_duplicates=true`) what was skipped as already inspected. `batch_id` and its
    URLs are null when every usable file was skipped (nothing was queued)."""

    batch_id: str | None
    status_url: str | None
    zip_url: str | None
    total: int
    accepted: list[AcceptedFile]
    rejected: list[RejectedFile]
    skipped_duplicates: list[SkippedFile] = Field(default_factory=list)


class BatchUploadResult(BatchAccepted):
    """The answer to `?wait=true`: the acceptance plus the final status of every image."""

    status: BatchStatus


class ImageSummary(BaseModel):
    """One inspected image in a listing."""

    img_unique_id: str
    timestamp: datetime
    image_height: int
    image_width: int
    processing_time_seconds: float
    total_defects: int
    defect_classes: dict[str, int]
    input_image_path: str
    batch_id: str | None = None
    original_filename: str | None = None
    thumbnail_url: str
    viewer_url: str


class ImageList(BaseModel):
    """A page of inspected images, newest first."""

    total: int
    page: int
    limit: int
    images: list[ImageSummary]


class DefectClassOut(BaseModel):
    """One defect class found in an image."""

    class_unique_id: int
    class_id: int
    class_name: str
    total_regions: int
    total_area_pixels: int


class ImageDetail(ImageSummary):
    """One inspected image with its classes, stored paths and download URLs."""

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


class PointOut(BaseModel):
    """A position in pixels."""

    x: float
    y: float


class BoundingBoxOut(BaseModel):
    """Top-left corner and size, in pixels."""

    x: int
    y: int
    width: int
    height: int


class RegionOut(BaseModel):
    """One defect region: geometry in pixels, shape descriptors unitless."""

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


class ClassRegions(BaseModel):
    """The regions of one defect class."""

    class_name: str
    class_id: int
    total_regions: int
    total_area_pixels: int
    regions: list[RegionOut]


class ImageRegions(BaseModel):
    """All regions of an image grouped by class (the PRD's example)."""

    img_unique_id: str
    image_height: int
    image_width: int
    total_regions: int
    classes: list[ClassRegions]


class DefectRow(RegionOut):
    """A region found by `/api/query/defects`, with its image and class."""

    img_unique_id: str
    timestamp: datetime
    class_name: str
    class_id: int


class DefectQueryResult(BaseModel):
    """A page of defect regions."""

    total: int
    page: int
    limit: int
    regions: list[DefectRow]


class ComponentHealth(BaseModel):
    """Whether one dependency answers."""

    ok: bool
    detail: str | None = None


class ModelServiceHealth(ComponentHealth):
    """The model service and where it is."""

    url: str


class DiskHealth(BaseModel):
    """Free space where the agent keeps its files, in bytes."""

    path: str
    free_bytes: int
    total_bytes: int
    ok: bool


class HealthStatus(BaseModel):
    """`ok` when every part answers, `degraded` when the model service does not, else `down`."""

    status: Literal["ok", "degraded", "down"]
    database: ComponentHealth
    model_service: ModelServiceHealth
    disk: DiskHealth
    version: str


class ClassStats(BaseModel):
    """How often one defect class was found."""

    class_name: str
    images: int
    regions: int
    total_area_pixels: int


class Stats(BaseModel):
    """Totals over every inspection."""

    total_images: int
    total_defects: int
    inspections_failed: int
    inspections_pending: int
    total_batches: int
    mean_processing_time_seconds: float | None
    mean_model_service_seconds: float | None
    mean_total_seconds: float | None
    defects_by_class: list[ClassStats]
    recent_uploads: list[ImageSummary]
    recent_failures: list[BatchItem]

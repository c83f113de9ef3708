"""Pydantic models of the reference model service's answers (docs/model-service-contract.md).

Units: pixels for coordinates, lengths and areas; seconds for times.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class Point(BaseModel):
    """A point in image coordinates: ``x`` = column, ``y`` = row, pixels."""

    x: float
    y: float


class BoundingBox(BaseModel):
    """Top-left corner and size of a region, pixels (``width`` = columns)."""

    x: int
    y: int
    width: int
    height: int


class Region(BaseModel):
    """One connected component of a defect class's mask."""

    region_id: int = Field(description="1-based, per class")
    centroid: Point
    bounding_box: BoundingBox
    area_pixels: int
    perimeter: float
    major_axis: float
    minor_axis: float
    circularity: float = Field(description="4πA/P²; 0 when the perimeter is 0")
    aspect_ratio: float = Field(description="major/minor; 0 when the minor axis is 0")


class ClassSummary(BaseModel):
    """All regions of one defect class."""

    class_id: int
    total_regions: int
    total_area_pixels: int
    regions: list[Region]


class ImageShape(BaseModel):
    """Input image size, pixels."""

    height: int
    width: int


class Provenance(BaseModel):
    """Where a label mask came from (optional; engine-specific fields may be absent)."""

    requested_engine: str | None = Field(
        default=None, description="the configured engine, when another one made the mask"
    )
    template: str | None = Field(
        default=None, description="template engine: file name of the matched golden image"
    )
    registration_offset: Point | None = Field(
        default=None,
        description="template engine: template-to-image shift, pixels (sub-pixel)",
    )
    match_score: float | None = Field(
        default=None, description="template engine: NCC of image and registered template, -1..1"
    )
    fallback_reason: str | None = Field(
        default=None, description="why the template engine fell back to the classical one"
    )
    model: str | None = Field(default=None, description="onnx engine: model file name")
    execution_provider: str | None = Field(
        default=None, description="onnx engine: onnxruntime execution provider"
    )


class InspectionResult(BaseModel):
    """The analysis of one image (``result_json``)."""

    image_shape: ImageShape
    processing_time_seconds: float
    engine: str = Field(description="the engine that made the mask")
    provenance: Provenance | None = None
    classes: dict[str, ClassSummary] = Field(description="only the classes found, by name")


class ResultImages(BaseModel):
    """The three result images, base64-encoded PNG."""

    combined: str = Field(description="input | overlay, width 2W")
    mask: str = Field(description="class colours on black")
    overlay: str = Field(description="mask blended over the input")


class UploadResponse(BaseModel):
    """Answer of ``POST /upload``."""

    success: bool = True
    filename: str
    model_name: str | None = Field(default=None, description="optional: the model's name")
    model_version: str | None = Field(
        default=None, description="optional: the model's version (any text, at most 128)"
    )
    processing_time_seconds: float
    result_json: InspectionResult
    images: ResultImages


class HealthResponse(BaseModel):
    """Answer of ``GET /health``."""

    status: str = "ok"
    engine: str
    classes: list[str]


class ErrorResponse(BaseModel):
    """Body of every error answer."""

    error: str
    detail: str | list[dict[str, object]] | None = None

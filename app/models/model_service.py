"""Pydantic models of the model service's answer (see docs/model-service-contract.md).

The customer's exact layout is undocumented, so `normalise_answer` folds every
plausible layout into one `Analysis` plus three image references before validation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

# Every number must fit the column it is stored in (app/models/database.py): PostgreSQL
# `integer` (int4) and `bigint` (int8); floats must be finite (JSON's NaN/Infinity
# extensions are refused). An answer that does not fit is refused whole, naming the field.
INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1
INT8_MAX = 2**63 - 1
Int4 = Annotated[int, Field(ge=INT4_MIN, le=INT4_MAX)]
Count4 = Annotated[int, Field(ge=0, le=INT4_MAX)]
Count8 = Annotated[int, Field(ge=0, le=INT8_MAX)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegativeFinite = Annotated[float, Field(ge=0, allow_inf_nan=False)]
CLASS_NAME_MAX_LENGTH = 128  # classes.class_name is VARCHAR(128)
MODEL_TEXT_MAX_LENGTH = 128  # inspections.model_name / model_version are VARCHAR(128)
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")

RESULT_IMAGE_KINDS: tuple[Literal["combined", "mask", "overlay"], ...] = (
    "combined",
    "mask",
    "overlay",
)


class Point(BaseModel):
    """A position in pixels (x = column, y = row)."""

    x: Finite
    y: Finite


class BoundingBox(BaseModel):
    """Top-left corner and size of a region, in pixels."""

    x: Int4
    y: Int4
    width: Count4
    height: Count4


class RegionAnalysis(BaseModel):
    """One connected defect region as the model service describes it."""

    model_config = ConfigDict(extra="allow")

    region_id: Int4
    centroid: Point
    bounding_box: BoundingBox
    area_pixels: Count8
    perimeter: NonNegativeFinite = 0.0
    major_axis: NonNegativeFinite = 0.0
    minor_axis: NonNegativeFinite = 0.0
    circularity: NonNegativeFinite = 0.0
    aspect_ratio: NonNegativeFinite = 0.0


class ClassAnalysis(BaseModel):
    """All regions of one defect class in one image."""

    model_config = ConfigDict(extra="allow")

    class_id: Int4
    total_regions: Count4
    total_area_pixels: Count8
    regions: list[RegionAnalysis] = Field(default_factory=list)

    @model_validator(mode="after")
    def _totals_agree(self) -> ClassAnalysis:
        # The classes table must agree with its region rows; refuse an answer where it can't.
        if len(self.regions) != self.total_regions:
            raise ValueError(
                f"total_regions is {self.total_regions} but {len(self.regions)} regions are listed"
            )
        area = sum(r.area_pixels for r in self.regions)
        if area != self.total_area_pixels:
            raise ValueError(
                f"total_area_pixels is {self.total_area_pixels} but the regions' areas add up"
                f" to {area}"
            )
        return self


class ImageShape(BaseModel):
    """Size of the analysed image, in pixels."""

    height: int = Field(gt=0, le=INT4_MAX)
    width: int = Field(gt=0, le=INT4_MAX)


class Analysis(BaseModel):
    """The analysis JSON: image size, defect classes by name, and inference time (seconds)."""

    model_config = ConfigDict(extra="allow")

    image_shape: ImageShape
    classes: dict[str, ClassAnalysis] = Field(default_factory=dict)
    processing_time_seconds: NonNegativeFinite | None = None

    @field_validator("classes")
    @classmethod
    def _clean_class_names(cls, classes: dict[str, ClassAnalysis]) -> dict[str, ClassAnalysis]:
        for name in classes:
            shown = _CONTROL_CHARACTERS.sub("?", name[:40])
            if not name.strip() or len(name) > CLASS_NAME_MAX_LENGTH:
                raise ValueError(
                    f"class name {shown!r} must be 1 to {CLASS_NAME_MAX_LENGTH} characters"
                )
            if _CONTROL_CHARACTERS.search(name):
                raise ValueError(
                    f"class name {shown!r} holds control characters (NUL, tab, newline ...)"
                )
        return classes

    @property
    def total_defects(self) -> int:
        """Number of regions over all classes."""
        return sum(c.total_regions for c in self.classes.values())


class ImageReference(BaseModel):
    """A result image as sent: inline base64 (`data`) or a URL/path to fetch (`url`)."""

    data: str | None = None
    url: str | None = None


def _clean_model_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    if _CONTROL_CHARACTERS.search(value):
        raise ValueError("holds control characters (NUL, tab, newline ...)")
    return value


# A model name or version as the service reports it: printable text, 1 to 128 characters
# (inspections.model_name / model_version are VARCHAR(128)); anything else refuses the answer.
ModelText = Annotated[
    str,
    Field(min_length=1, max_length=MODEL_TEXT_MAX_LENGTH, strict=True),
    AfterValidator(_clean_model_text),
]


class ModelServiceAnswer(BaseModel):
    """The model service's answer, normalised: analysis plus three image references, and
    the model's name and version when the service reports them."""

    analysis: Analysis
    images: dict[Literal["combined", "mask", "overlay"], ImageReference]
    processing_time_seconds: NonNegativeFinite | None = None
    model_name: ModelText | None = None
    model_version: ModelText | None = None


_ANALYSIS_KEYS = ("result_json", "result", "analysis")
_IMAGE_ALIASES = {kind: (kind, f"{kind}_image", f"{kind}_png") for kind in RESULT_IMAGE_KINDS}


def _image_reference(value: Any) -> ImageReference | None:
    if isinstance(value, dict):
        for key in ("data", "base64", "content"):
            if isinstance(value.get(key), str):
                return ImageReference(data=value[key])
        for key in ("url", "path", "href"):
            if isinstance(value.get(key), str):
                return ImageReference(url=value[key])
        return None
    if not isinstance(value, str) or not value:
        return None
    if value.startswith(("http://", "https://", "/")) and len(value) < 2048:
        return ImageReference(url=value)
    return ImageReference(data=value)


def normalise_answer(body: Any) -> dict[str, Any]:
    """Fold the plausible answer layouts into `ModelServiceAnswer`'s input shape.

    Accepts the analysis at the top level or under `result_json`/`result`, and
    images under `images` or as top-level `combined_image`/`mask_image`/`overlay_image`.
    Raises nothing: what is missing is reported by validating the result.
    """
    if not isinstance(body, dict):
        return {"analysis": None, "images": {}}
    analysis: Any = body
    for key in _ANALYSIS_KEYS:
        if isinstance(body.get(key), dict):
            analysis = body[key]
            break
    containers = [c for c in (body.get("images"), analysis.get("images")) if isinstance(c, dict)]
    containers += [body, analysis]
    images: dict[str, ImageReference] = {}
    for kind, aliases in _IMAGE_ALIASES.items():
        for container in containers:
            found = next(
                (ref for a in aliases if (ref := _image_reference(container.get(a))) is not None),
                None,
            )
            if found is not None:
                images[kind] = found
                break
    processing_time = body.get("processing_time_seconds", body.get("processing_time"))
    if not isinstance(processing_time, int | float):
        processing_time = analysis.get("processing_time_seconds", analysis.get("processing_time"))
    model = {
        key: next((c[key] for c in (body, analysis) if c.get(key) is not None), None)
        for key in ("model_name", "model_version")
    }
    return {
        **model,
        "analysis": {k: v for k, v in analysis.items() if k != "images"},
        "images": images,
        "processing_time_seconds": processing_time
        if isinstance(processing_time, int | float)
        else None,
    }


# A region may name its class itself; the keys the agent reads for that.
_REGION_CLASS_KEYS = ("class_name", "class", "label", "category")
# How far a centroid may lie outside its region's bounding box, pixels: a centre of mass
# lies within the box's pixels (0.5 px inside its edges, pixel-centre coordinates); a
# service that rounds, or counts coordinates from pixel corners, may shift it by up to this.
CENTROID_TOLERANCE_PX = 1.0


def answer_problems(analysis: Analysis, sizes: Sequence[tuple[int, int]]) -> list[str]:
    """What in a validated analysis does not fit the input image, whose (width, height)
    in pixels may be any of `sizes` (its own first; transposed for an EXIF rotation), in
    words (an empty list: it fits). Checked before anything is stored:

    - `image_shape` is exactly one of `sizes`;
    - every region's bounding box lies inside the image, at least 1 x 1 pixel;
    - its area is at most its box's area (and so at most the image's), at least 1 pixel;
    - its centroid lies inside its box, within CENTROID_TOLERANCE_PX;
    - a class's regions' areas, and all classes' together, are at most the image's area
      (regions are disjoint pixel sets of one label mask);
    - a region that names its class (`class_name`, `class`, `label`, `category`, or a
      `class_id`) names the class it is listed under, one of the answer's classes.

    Source of the geometry: segformer_service/analysis.py (scikit-image `regionprops`:
    `bbox`, `area`, `centroid`), docs/model-service-contract.md.
    """
    problems: list[str] = []
    shape = analysis.image_shape
    width, height = shape.width, shape.height
    if (width, height) not in sizes:
        problems.append(
            f"image_shape is {width} x {height} pixels, but the image sent is"
            f" {sizes[0][0]} x {sizes[0][1]}"
        )
        return problems
    image_area = width * height
    all_areas = 0
    ids = {c.class_id: name for name, c in analysis.classes.items()}
    for name, found in analysis.classes.items():
        all_areas += found.total_area_pixels
        if found.total_area_pixels > image_area:
            problems.append(
                f"class {name!r}: total_area_pixels {found.total_area_pixels} is more than"
                f" the image's {image_area} pixels"
            )
        for region in found.regions:
            where = f"class {name!r} region {region.region_id}"
            problems.extend(
                f"{where}: {p}" for p in _region_problems(region, name, found, ids, width, height)
            )
    if all_areas > image_area:
        problems.append(
            f"the regions' areas add up to {all_areas} pixels, more than the image's {image_area}"
        )
    return problems


def _region_problems(
    region: RegionAnalysis,
    class_name: str,
    found: ClassAnalysis,
    ids: dict[int, str],
    width: int,
    height: int,
) -> list[str]:
    problems: list[str] = []
    box = region.bounding_box
    if box.width < 1 or box.height < 1:
        problems.append(f"bounding_box is {box.width} x {box.height} pixels (at least 1 x 1)")
    if box.x < 0 or box.y < 0 or box.x + box.width > width or box.y + box.height > height:
        problems.append(
            f"bounding_box ({box.x}, {box.y}, {box.width} x {box.height}) lies outside the"
            f" {width} x {height} image"
        )
    if region.area_pixels < 1 or region.area_pixels > box.width * box.height:
        problems.append(
            f"area_pixels {region.area_pixels} is not between 1 and its bounding box's"
            f" {box.width * box.height}"
        )
    tol = CENTROID_TOLERANCE_PX
    c = region.centroid
    if not (
        box.x - tol <= c.x <= box.x + box.width + tol - 1
        and box.y - tol <= c.y <= box.y + box.height + tol - 1
    ):
        problems.append(f"centroid ({c.x:g}, {c.y:g}) lies outside its bounding box")
    extra = region.model_extra or {}
    for key in _REGION_CLASS_KEYS:
        named = extra.get(key)
        if named is not None and named != class_name:
            problems.append(
                f"{key} {str(named)[:60]!r} is not the class it is listed under"
                f" ({'another' if named in ids.values() else 'not one'} of the answer's classes)"
            )
    named_id = extra.get("class_id")
    if named_id is not None and named_id != found.class_id:
        problems.append(
            f"class_id {str(named_id)[:20]} is not its class's {found.class_id}"
            f" ({'another' if isinstance(named_id, int) and named_id in ids else 'not one'}"
            " of the answer's classes)"
        )
    return problems

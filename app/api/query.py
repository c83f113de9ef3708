"""Query routes: image listing and details, classes, regions, defect search, deletion."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from fastapi.exceptions import RequestValidationError

from app.api.deps import InspectionServiceDep, QueryServiceDep
from app.api.routing import VALIDATION_ERROR
from app.errors import ImageNotFound, responses
from app.models.schemas import (
    DefectClassOut,
    DefectQueryResult,
    ImageDetail,
    ImageList,
    ImageRegions,
)
from app.services.database.repositories import DefectFilters, ImageFilters

router = APIRouter(tags=["Query"], responses=VALIDATION_ERROR)

Page = Annotated[int, Query(ge=1, description="1-based page number.")]
Limit = Annotated[int, Query(ge=1, le=100, description="Rows per page (at most 100).")]
StartDate = Annotated[date | None, Query(description="First day (UTC), inclusive: YYYY-MM-DD.")]
EndDate = Annotated[date | None, Query(description="Last day (UTC), inclusive: YYYY-MM-DD.")]
ClassName = Annotated[
    str | None,
    Query(
        max_length=128,
        description="Defect class name, any case (`pi_particle` finds `PI_Particle`).",
    ),
]
DateRange = Annotated[
    str | None,
    Query(
        max_length=64,
        description="The PRD's form of the date filter: `YYYY-MM-DD..YYYY-MM-DD`, inclusive UTC"
        " days; either end may be left open (`2026-02-24..`). Use it or start_date/end_date"
        " (both together only when they agree).",
        examples=["2026-02-24..2026-02-25"],
    ),
]
_DATE_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})?\.\.(\d{4}-\d{2}-\d{2})?$")


def _date_range_problem(value: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", "date_range"), "msg": message, "input": value}]
    )


def resolve_dates(
    date_range: str | None, start_date: date | None, end_date: date | None
) -> tuple[date | None, date | None]:
    """The (start, end) days asked for, from `date_range` and/or `start_date`/`end_date`.

    Raises:
        RequestValidationError: (422) `date_range` is malformed, reversed, or disagrees with
            start_date/end_date.
    """
    if date_range is None:
        return start_date, end_date
    match = _DATE_RANGE.match(date_range)
    if match is None or match.groups() == (None, None):
        raise _date_range_problem(
            date_range, "date_range must be YYYY-MM-DD..YYYY-MM-DD (e.g. 2026-02-24..2026-02-25)"
        )
    try:
        first, last = (date.fromisoformat(g) if g else None for g in match.groups())
    except ValueError as exc:
        raise _date_range_problem(date_range, f"date_range has an impossible date: {exc}") from exc
    if first and last and first > last:
        raise _date_range_problem(date_range, f"date_range starts ({first}) after it ends ({last})")
    for name, given, ranged in (("start_date", start_date, first), ("end_date", end_date, last)):
        if given is not None and given != ranged:
            raise _date_range_problem(
                date_range,
                f"date_range {date_range} disagrees with {name}={given}; give one or the other",
            )
    return first, last


@router.get("/images", response_model=ImageList, summary="List inspected images")
async def list_images(
    queries: QueryServiceDep,
    page: Page = 1,
    limit: Limit = 20,
    start_date: StartDate = None,
    end_date: EndDate = None,
    date_range: DateRange = None,
    class_name: ClassName = None,
    batch_id: Annotated[str | None, Query(max_length=40)] = None,
    min_defects: Annotated[
        int | None, Query(ge=0, description="At least this many regions.")
    ] = None,
) -> ImageList:
    """Stored inspections, newest first, with defect counts by class."""
    start_date, end_date = resolve_dates(date_range, start_date, end_date)
    filters = ImageFilters(start_date, end_date, class_name, batch_id, min_defects)
    return await queries.list_images(filters, page, limit)


@router.get(
    "/images/{img_unique_id}",
    response_model=ImageDetail,
    summary="One inspected image",
    responses=responses(ImageNotFound),
)
async def get_image(img_unique_id: str, queries: QueryServiceDep) -> ImageDetail:
    """Size, timing, stored paths, defect classes and download URLs of one inspection."""
    return await queries.image_detail(img_unique_id)


@router.get(
    "/images/{img_unique_id}/classes",
    response_model=list[DefectClassOut],
    summary="Defect classes of an image",
    responses=responses(ImageNotFound),
)
async def get_image_classes(img_unique_id: str, queries: QueryServiceDep) -> list[DefectClassOut]:
    """One row per defect class found, with its region count and total area (pixels)."""
    return await queries.image_classes(img_unique_id)


@router.get(
    "/images/{img_unique_id}/regions",
    response_model=ImageRegions,
    summary="Defect regions of an image, by class",
    responses=responses(ImageNotFound),
)
async def get_image_regions(img_unique_id: str, queries: QueryServiceDep) -> ImageRegions:
    """Every region (centroid, bounding box, area, perimeter, axes, circularity, aspect
    ratio) grouped by defect class."""
    return await queries.image_regions(img_unique_id)


@router.get("/query/defects", response_model=DefectQueryResult, summary="Search defect regions")
async def query_defects(
    queries: QueryServiceDep,
    class_name: ClassName = None,
    date_range: DateRange = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    min_area: Annotated[int | None, Query(ge=0, description="Smallest area, pixels.")] = None,
    max_area: Annotated[int | None, Query(ge=0, description="Largest area, pixels.")] = None,
    img_unique_id: Annotated[str | None, Query(max_length=40)] = None,
    page: Page = 1,
    limit: Limit = 50,
) -> DefectQueryResult:
    """Regions with their image and class, filtered by class, date (`date_range` as in the
    PRD, or `start_date`/`end_date`) and area."""
    start_date, end_date = resolve_dates(date_range, start_date, end_date)
    filters = DefectFilters(class_name, start_date, end_date, min_area, max_area, img_unique_id)
    return await queries.query_defects(filters, page, limit)


@router.delete(
    "/images/{img_unique_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an inspection and its files",
    responses=responses(ImageNotFound),
)
async def delete_image(img_unique_id: str, service: InspectionServiceDep) -> Response:
    """Deletes its rows (classes and regions by cascade), input, results and thumbnails."""
    await service.delete(img_unique_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

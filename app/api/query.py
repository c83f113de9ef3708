"""Query routes: image listing and details, classes, regions, defect search, deletion."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status

from app.api.deps import InspectionServiceDep, QueryServiceDep
from app.api.params import (
    BatchIdFilter,
    ClassName,
    ContextFilterDep,
    Cursor,
    DateRange,
    DefectFiltersDep,
    DispositionFilter,
    EndDate,
    ImgUniqueId,
    Limit,
    ModelVersion,
    Page,
    RegionCount,
    ReviewState,
    SearchText,
    StartDate,
    defect_cursor,
    image_cursor,
    resolve_dates,
)
from app.api.security import AUTH_ERRORS, MethodAccess
from app.api.viewer import ViewerDep
from app.errors import VALIDATION_ERROR_RESPONSE, ImageNotFound, responses
from app.models.database import InspectionStatus
from app.models.schemas import (
    DefectClassOut,
    DefectQueryResult,
    ImageList,
    ImageOrInspection,
    ImageRegions,
)
from app.services.history.repository import ImageFilters

router = APIRouter(
    tags=["Query"],
    dependencies=[MethodAccess],
    responses={**AUTH_ERRORS, **VALIDATION_ERROR_RESPONSE},
)


@router.get("/images", response_model=ImageList, summary="List inspected images")
async def list_images(
    queries: QueryServiceDep,
    viewer: ViewerDep,
    page: Page = 1,
    limit: Limit = 20,
    cursor: Cursor = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    date_range: DateRange = None,
    class_name: ClassName = None,
    batch_id: BatchIdFilter = None,
    min_defects: RegionCount = None,
    model_version: ModelVersion = None,
    q: SearchText = None,
    review_state: ReviewState = None,
    disposition: DispositionFilter = None,
    context: ContextFilterDep = None,
    status: Annotated[
        Literal["succeeded", "failed", "pending", "processing"],
        Query(
            description="`succeeded` (default): stored inspections with their defects."
            " `failed`, `pending`, `processing`: accepted images with no result, with their"
            " error and retry URL (class, defect, model and review filters do not apply to them;"
            " dates, batch and `q` do)."
        ),
    ] = "succeeded",
) -> ImageList:
    """Images of one status, newest first: stored inspections with defect counts by class,
    or the failed (pending, processing) ones with their error and retry URL. Each stored
    inspection carries its `review` (regions, reviewed regions, false calls, disposition);
    for a reviewer who audits the board or may audit it (blind second review) it shows no
    first review, and the `review_state` and `disposition` filters treat it as unreviewed
    and undecided (docs/review.md).

    Page by `page` (as in the PRD) or, to walk far, by `cursor` = the previous answer's
    `next_cursor`. `total` is exact up to 10,000 and for date, class and model version
    filters at any size; otherwise an estimate, and `total_is_exact` says so."""
    start_date, end_date = resolve_dates(date_range, start_date, end_date)
    after = image_cursor(cursor, page, status)
    filters = ImageFilters(
        start_date,
        end_date,
        class_name,
        batch_id,
        min_defects,
        model_version,
        search=q,
        review_state=review_state,
        disposition=disposition,
        context=context,
        viewer=viewer,
    )
    return await queries.list_images(
        filters, page, limit, InspectionStatus(status), after, viewer=viewer
    )


@router.get(
    "/images/{img_unique_id}",
    response_model=ImageOrInspection,
    summary="One inspected image (or where it stands)",
    responses=responses(ImageNotFound),
)
async def get_image(
    img_unique_id: ImgUniqueId, queries: QueryServiceDep, viewer: ViewerDep
) -> ImageOrInspection:
    """Size, timing, stored paths, defect classes and download URLs of one inspection
    (`status` `succeeded`); for an image with no result yet or a failed one, its `status`,
    `error` and `retry_url`. The disposition is null for a reviewer who audits the board
    or may audit it (blind second review)."""
    return await queries.image_or_inspection(img_unique_id, viewer)


@router.get(
    "/images/{img_unique_id}/classes",
    response_model=list[DefectClassOut],
    summary="Defect classes of an image",
    responses=responses(ImageNotFound),
)
async def get_image_classes(
    img_unique_id: ImgUniqueId, queries: QueryServiceDep
) -> list[DefectClassOut]:
    """One row per defect class found, with its region count and total area (pixels)."""
    return await queries.image_classes(img_unique_id)


@router.get(
    "/images/{img_unique_id}/regions",
    response_model=ImageRegions,
    summary="Defect regions of an image, by class",
    responses=responses(ImageNotFound),
)
async def get_image_regions(
    img_unique_id: ImgUniqueId, queries: QueryServiceDep, viewer: ViewerDep
) -> ImageRegions:
    """Every region (centroid, bounding box, area, perimeter, axes, circularity, aspect
    ratio) grouped by defect class, with its verdict (`review`). For a reviewer who audits
    the board or may audit it (it is in the double-review sample, they gave none of its
    first verdicts and nobody else audits it), every `review` is null: the second review
    is blind, in the viewer's audit mode or not."""
    return await queries.image_regions(img_unique_id, viewer)


@router.get("/query/defects", response_model=DefectQueryResult, summary="Search defect regions")
async def query_defects(
    queries: QueryServiceDep,
    filters: DefectFiltersDep,
    viewer: ViewerDep,
    page: Page = 1,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DefectQueryResult:
    """Regions with their image and class, filtered by class, date (`date_range` as in the
    PRD, or `start_date`/`end_date`), area, image, batch, and their image's review state
    and disposition; newest image first.

    Page by `page` or by `cursor` (the previous answer's `next_cursor`). `total` is exact
    up to 10,000 and for date and class filters at any size; otherwise an estimate, and
    `total_is_exact` says so. A region's `review` is null for a reviewer who audits its
    board or may audit it (as in `/images/{id}/regions`)."""
    return await queries.query_defects(
        filters, page, limit, defect_cursor(cursor, page), viewer=viewer
    )


@router.delete(
    "/images/{img_unique_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an inspection and its files (admin)",
    responses=responses(ImageNotFound),
)
async def delete_image(img_unique_id: ImgUniqueId, service: InspectionServiceDep) -> Response:
    """Deletes its rows (classes and regions by cascade), input, results and thumbnails."""
    await service.delete(img_unique_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

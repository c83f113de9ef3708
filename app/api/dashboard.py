"""Dashboard routes: aggregates for the web UI's charts, computed in SQL."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.api.deps import SessionDep, SettingsDep
from app.api.params import (
    BatchIdFilter,
    ClassName,
    ContextFilterDep,
    EndDate,
    ModelVersion,
    StartDate,
)
from app.api.security import AUTH_ERRORS, MethodAccess
from app.api.viewer import ViewerDep
from app.errors import VALIDATION_ERROR_RESPONSE
from app.models.dashboard import DashboardSummary, DefectsPerDay, Heatmap
from app.models.review import FalseCallReasons, ReviewFigures
from app.services.history.dashboard import DashboardService, Period
from app.services.review.repository import ReviewFilters
from app.services.review.service import ReviewService

router = APIRouter(
    prefix="/dashboard",
    tags=["System"],
    dependencies=[MethodAccess],
    responses={**AUTH_ERRORS, **VALIDATION_ERROR_RESPONSE},
)


async def get_dashboard_service(session: SessionDep) -> DashboardService:
    """Dashboard aggregates over this request's session."""
    return DashboardService(session)


DashboardServiceDep = Annotated[DashboardService, Depends(get_dashboard_service)]


@router.get(
    "/summary",
    response_model=DashboardSummary,
    summary="Totals and defects by class (with Pareto shares)",
)
async def summary(
    service: DashboardServiceDep,
    start_date: StartDate = None,
    end_date: EndDate = None,
    model_version: ModelVersion = None,
    context: ContextFilterDep = None,
) -> DashboardSummary:
    """Images, images with defects, regions and area (pixels) in the range; per class its
    regions, share and cumulative share, most regions first. The board-context filters
    (`board_serial`, `product`, `line`, `side`, `lot`) keep the inspections sent with that
    context, as on every dashboard route."""
    return await service.summary(Period(start_date, end_date, model_version, context))


@router.get(
    "/defects-per-day",
    response_model=DefectsPerDay,
    summary="Images and defect regions per day",
)
async def defects_per_day(
    service: DashboardServiceDep,
    start_date: StartDate = None,
    end_date: EndDate = None,
    class_name: ClassName = None,
    model_version: ModelVersion = None,
    context: ContextFilterDep = None,
) -> DefectsPerDay:
    """One row per UTC day of the range (default: the last 30 days, at most 731), with
    images inspected and regions by class; days without inspections are zeros."""
    return await service.defects_per_day(
        Period(start_date, end_date, model_version, context), class_name
    )


@router.get(
    "/heatmap",
    response_model=Heatmap,
    summary="Where defects are: centroid counts over the image area",
)
async def heatmap(
    service: DashboardServiceDep,
    class_name: ClassName = None,
    bins: Annotated[int, Query(ge=4, le=128, description="Grid cells per side.")] = 32,
    start_date: StartDate = None,
    end_date: EndDate = None,
    model_version: ModelVersion = None,
    context: ContextFilterDep = None,
) -> Heatmap:
    """Region centroids, normalised by their image's width and height, counted on a
    bins × bins grid (row 0 = top of the image)."""
    return await service.heatmap(
        Period(start_date, end_date, model_version, context), class_name, bins
    )


@router.get(
    "/review",
    response_model=ReviewFigures,
    summary="False-call rate, first-pass yield and reviewed share, per day and class",
)
async def review_figures(
    session: SessionDep,
    viewer: ViewerDep,
    start_date: StartDate = None,
    end_date: EndDate = None,
    class_name: ClassName = None,
    batch_id: BatchIdFilter = None,
    model_version: ModelVersion = None,
    context: ContextFilterDep = None,
) -> ReviewFigures:
    """Over the images inspected in the range (default: the last 30 days, at most 731):
    per class, false calls / reviewed calls; per UTC day and in total, first-pass yield
    (reviewed images without a `real` verdict / reviewed images; an image is reviewed
    when each of its regions has a verdict), reviewed share (reviewed images / images
    with regions) and false-call rate; and images per disposition. For a reviewer who
    audits boards or may audit them, those boards count as unreviewed and undecided (their
    first verdicts and disposition are left out: blind second review, docs/review.md)."""
    filters = ReviewFilters(
        start_date, end_date, batch_id, class_name, model_version, context, viewer=viewer
    )
    return await ReviewService(session).figures(filters)


@router.get(
    "/false-calls/reasons",
    response_model=FalseCallReasons,
    summary="False calls by reason (Pareto)",
)
async def false_call_reasons(
    session: SessionDep,
    settings: SettingsDep,
    viewer: ViewerDep,
    start_date: StartDate = None,
    end_date: EndDate = None,
    class_name: ClassName = None,
    batch_id: BatchIdFilter = None,
    model_version: ModelVersion = None,
) -> FalseCallReasons:
    """Over the images inspected in the range (default: the last 30 days, at most 731):
    the regions whose verdict is `false_call`, per reason code, with each reason's share
    and the cumulative share, most first; false calls given without a reason come last
    (`reason` null). For a reviewer who audits boards or may audit them, those boards'
    false calls are left out (blind second review, docs/review.md)."""
    filters = ReviewFilters(
        start_date, end_date, batch_id, class_name, model_version, viewer=viewer
    )
    service = ReviewService(session, reasons=settings.review_reasons)
    return await service.false_call_reasons(filters)

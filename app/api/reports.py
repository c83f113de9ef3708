"""Report routes: the shift or day report as PDF or XLSX (docs/spc.md, "Reports")."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from app.api.deps import SessionDep, SettingsDep
from app.api.security import AUTH_ERRORS, MethodAccess
from app.api.viewer import ViewerDep
from app.errors import VALIDATION_ERROR_RESPONSE
from app.services.reports.content import build_report
from app.services.reports.render import PDF_MEDIA_TYPE, XLSX_MEDIA_TYPE, render

router = APIRouter(
    prefix="/reports",
    tags=["System"],
    dependencies=[MethodAccess],
    responses={**AUTH_ERRORS, **VALIDATION_ERROR_RESPONSE},
)


@router.get(
    "/{day}",
    summary="Shift or day report (PDF or XLSX)",
    response_class=Response,
    responses={
        200: {
            "content": {PDF_MEDIA_TYPE: {}, XLSX_MEDIA_TYPE: {}},
            "description": "The report file, as an attachment.",
        }
    },
)
async def report(
    session: SessionDep,
    settings: SettingsDep,
    viewer: ViewerDep,
    day: Annotated[date, Path(description="Production day, YYYY-MM-DD, in SPC_TIMEZONE.")],
    format: Annotated[Literal["pdf", "xlsx"], Query(description="File format.")] = "pdf",
    shift: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=16,
            pattern=r"^[A-Za-z0-9_-]+$",
            description="A shift of SHIFTS; none: the whole day.",
        ),
    ] = None,
) -> Response:
    """Yield, Pareto, false-call rate, top boards and the p- and u-charts of the 30 days up
    to `day`, for the production day or one shift of it. For a reviewer who audits boards
    of the period or may audit them, the false-call rate leaves their first verdicts out
    (blind second review, docs/review.md)."""
    content = await build_report(session, settings, day, shift, viewer)
    data, media_type, name = await render(content, format)
    return Response(
        data,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )

"""Board routes: the timeline of one board serial."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from app.api.deps import QueryServiceDep, SessionDep
from app.api.params import (
    PLAIN_TEXT_PATTERN,
    ContextFilterDep,
    DateRange,
    EndDate,
    StartDate,
    resolve_dates,
)
from app.api.security import AUTH_ERRORS, MethodAccess
from app.api.viewer import ViewerDep
from app.errors import VALIDATION_ERROR_RESPONSE, BoardNotFound, responses
from app.models.boards import BoardTimeline, BoardYield, ContextValues
from app.models.context import CONTEXT_TEXT_LENGTH
from app.services.boards.service import (
    MAX_YIELD_DAYS,
    BoardService,
    board_yield,
    context_values,
)
from app.services.history.dashboard import daily_range

router = APIRouter(
    tags=["Query"],
    dependencies=[MethodAccess],
    responses={**AUTH_ERRORS, **VALIDATION_ERROR_RESPONSE},
)

BoardSerial = Annotated[
    str,
    Path(
        min_length=1,
        max_length=CONTEXT_TEXT_LENGTH,
        pattern=PLAIN_TEXT_PATTERN,  # no NUL or other control character (min_length: not empty)
        description="The board's serial number, as sent in `board_serial`.",
        examples=["SN123456"],
    ),
]


@router.get(
    "/boards/{board_serial}",
    response_model=BoardTimeline,
    summary="Every inspection of one board",
    responses=responses(BoardNotFound),
)
async def board_timeline(
    board_serial: BoardSerial, queries: QueryServiceDep, viewer: ViewerDep
) -> BoardTimeline:
    """The board's timeline, oldest first: every inspection sent with this `board_serial`
    (its first pass, then re-inspections, e.g. after repair), each with its regions,
    verdicts, disposition and pass/fail outcome (docs/boards.md). For a reviewer who
    audits an inspection or may audit it, that inspection shows no verdict and no
    disposition, and its outcome is judged as unreviewed (blind second review)."""
    return await BoardService(queries).timeline(board_serial, viewer)


@router.get(
    "/dashboard/board-yield",
    response_model=BoardYield,
    tags=["Dashboard"],
    summary="First-pass and re-inspection yield per product and line",
)
async def board_yield_figures(
    session: SessionDep,
    viewer: ViewerDep,
    context: ContextFilterDep = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    date_range: DateRange = None,
) -> BoardYield:
    """Yield of the boards first inspected in the range (default: the last 30 days, at
    most 92), in total, per product and per line: first-pass yield (the first inspection
    decides) and re-inspection yield (boards inspected again: their latest inspection).
    Pass/fail as docs/boards.md defines it. Filters: board_serial, product, line, side, lot.
    For a reviewer who audits inspections or may audit them, those are judged as
    unreviewed (blind second review, docs/review.md)."""
    start, end = resolve_dates(date_range, start_date, end_date)
    first, last, _ = daily_range(start, end, max_days=MAX_YIELD_DAYS)
    return await board_yield(session, first, last, context, viewer)


@router.get(
    "/dashboard/board-contexts",
    response_model=ContextValues,
    tags=["Dashboard"],
    summary="Products, lines, sides and lots inspected in the range",
)
async def board_context_values(
    session: SessionDep,
    start_date: StartDate = None,
    end_date: EndDate = None,
    date_range: DateRange = None,
) -> ContextValues:
    """The distinct `product`, `line`, `side` and `lot` values the inspections of the
    range (default: the last 30 days, at most 92) were sent with, sorted: the values the
    dashboard's filter pickers offer."""
    start, end = resolve_dates(date_range, start_date, end_date)
    first, last, _ = daily_range(start, end, max_days=MAX_YIELD_DAYS)
    return await context_values(session, first, last)

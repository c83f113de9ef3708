"""Board routes: the timeline of one board serial."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from app.api.deps import QueryServiceDep
from app.api.security import AUTH_ERRORS, MethodAccess
from app.errors import VALIDATION_ERROR_RESPONSE, BoardNotFound, responses
from app.models.boards import BoardTimeline
from app.models.context import CONTEXT_TEXT_LENGTH
from app.services.boards.service import BoardService

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
        pattern=r"^[^\x00-\x1f\x7f]+$",  # no NUL or other control character
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
async def board_timeline(board_serial: BoardSerial, queries: QueryServiceDep) -> BoardTimeline:
    """The board's timeline, oldest first: every inspection sent with this `board_serial`
    (its first pass, then re-inspections, e.g. after repair), each with its regions,
    verdicts, disposition and pass/fail outcome (docs/boards.md)."""
    return await BoardService(queries).timeline(board_serial)

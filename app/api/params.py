"""Bounded request parameters, shared by the routes so Swagger shows every bound.

Nothing a client sends reaches the database unchecked: ids must look like real ids,
text may not hold control characters (PostgreSQL refuses NUL), and numbers stay
within the columns they are compared with (PostgreSQL `integer` / `bigint`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Depends, Path, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BeforeValidator

from app.api.viewer import ViewerDep
from app.models.context import CONTEXT_TEXT_LENGTH, BoardSide
from app.services.boards.repository import ContextFilter
from app.services.history.cursors import (
    CURSOR_PATTERN,
    MAX_CURSOR_LENGTH,
    BadCursor,
    DefectKey,
    ImageKey,
    decode_defect_cursor,
    decode_image_cursor,
)
from app.services.history.repository import DefectFilters

INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1
MAX_PAGE = 1_000_000

IMG_UNIQUE_ID_PATTERN = r"^[0-9]{8}_[0-9]{6}_[A-Z0-9]{6}$"
BATCH_ID_PATTERN = r"^B_[0-9]{8}_[0-9]{6}_[A-Z0-9]{6}$"
# Printable text only: no C0 control characters (NUL, tab, CR, LF ...) and no DEL.
PLAIN_TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"

# What a value that breaks a pattern is told, instead of the regular expression itself.
_PATTERN_PROBLEMS = {
    IMG_UNIQUE_ID_PATTERN: "not a full inspection id: an inspection id is the UTC date and"
    " time of upload and six letters or digits, e.g. 20260225_103045_ABC123",
    BATCH_ID_PATTERN: "not a full batch id: a batch id is B_, the UTC date and time of upload"
    " and six letters or digits, e.g. B_20260225_103045_ABC123",
    PLAIN_TEXT_PATTERN: "must be printable text (no tab, line break or other control character)",
    CURSOR_PATTERN: "not a cursor of this listing: give the next_cursor of the previous page",
    r"^[A-Za-z0-9._-]+$": "may hold only letters, digits, '.', '_' and '-'",  # app/api/keys.py
    # GOLDEN_ID_PATTERN of app/services/golden/service.py (app/api/golden.py).
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$": "1-128 letters, digits, '.', '_' or '-', starting"
    " with a letter or digit, e.g. 12000052",
}


def validation_message(error: Mapping[str, Any]) -> str:
    """The message of one request validation error (pydantic's `ErrorDetails`) for the
    client: pydantic's own, except that a value breaking a pattern is told what the value
    should look like (with an example) rather than shown the regular expression."""
    if error.get("type") == "string_pattern_mismatch":
        pattern = str((error.get("ctx") or {}).get("pattern"))
        return _PATTERN_PROBLEMS.get(
            pattern, "does not have the form this parameter takes (see /docs)"
        )
    return str(error.get("msg"))


_IMG_ID_TEXT = "An inspection id: UTC date and time of upload and six letters or digits."
_BATCH_ID_TEXT = "A batch id: `B_` and the UTC date and time of upload and six letters or digits."

ImgUniqueId = Annotated[
    str,
    Path(
        pattern=IMG_UNIQUE_ID_PATTERN,
        description=_IMG_ID_TEXT,
        examples=["20260225_103045_ABC123"],
    ),
]
RegionUniqueId = Annotated[
    int,
    Path(ge=1, le=INT8_MAX, description="A defect region's `region_unique_id`.", examples=[1041]),
]
BatchId = Annotated[
    str,
    Path(
        pattern=BATCH_ID_PATTERN, description=_BATCH_ID_TEXT, examples=["B_20260225_103045_ABC123"]
    ),
]
ImgUniqueIdFilter = Annotated[
    str | None,
    Query(pattern=IMG_UNIQUE_ID_PATTERN, description=_IMG_ID_TEXT + " Only this image."),
]
BatchIdFilter = Annotated[
    str | None,
    Query(pattern=BATCH_ID_PATTERN, description=_BATCH_ID_TEXT + " Only this batch."),
]
ClassName = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=128,
        pattern=PLAIN_TEXT_PATTERN,
        description="Defect class name, any case (`pi_particle` finds `PI_Particle`); printable"
        " text, at most 128 characters.",
    ),
]
ModelVersion = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=128,
        pattern=PLAIN_TEXT_PATTERN,
        description="Only results of this model version, exactly as the model service reported"
        " it (see `provenance.model_version` of an image); printable text, at most 128"
        " characters.",
    ),
]
SearchText = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=100,
        pattern=PLAIN_TEXT_PATTERN,
        description="Only images whose original file name or image id starts with this text"
        " (any letter case; `0004` finds `00041000_test.jpg`); printable text, at most 100"
        " characters. `%` and `_` match themselves.",
        examples=["00041000"],
    ),
]
Page = Annotated[
    int,
    Query(
        ge=1,
        le=MAX_PAGE,
        description="1-based page number (OFFSET paging: a deep page costs more than page 1;"
        " use `cursor` to walk far).",
    ),
]
Cursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=MAX_CURSOR_LENGTH,
        pattern=CURSOR_PATTERN,
        description="The `next_cursor` of the previous page (same filters): the page after"
        " it, at the cost of page 1 however deep. Give `cursor` or `page`, not both.",
    ),
]
Limit = Annotated[int, Query(ge=1, le=100, description="Rows per page (at most 100).")]
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_day_only(value: object) -> object:
    """Refuses what pydantic would otherwise read as a date (`0` as 1970-01-01, datetimes)."""
    if isinstance(value, str) and not _ISO_DAY.fullmatch(value):
        raise ValueError("a day is written YYYY-MM-DD, e.g. 2026-02-25")
    return value


# Any calendar day is accepted (0001-01-01 to 9999-12-31): the queries never step past it.
StartDate = Annotated[
    date | None,
    BeforeValidator(_iso_day_only),
    Query(description="First day (UTC), inclusive: YYYY-MM-DD."),
]
EndDate = Annotated[
    date | None,
    BeforeValidator(_iso_day_only),
    Query(description="Last day (UTC), inclusive: YYYY-MM-DD."),
]
RegionCount = Annotated[
    int | None, Query(ge=0, le=INT4_MAX, description="At least this many regions.")
]
AreaPixels = Annotated[int | None, Query(ge=0, le=INT8_MAX)]
ReviewState = Annotated[
    Literal["unreviewed", "reviewed", "has_false_calls"] | None,
    Query(
        description="Only images in this review state: `unreviewed` (at least one region"
        " without a verdict), `reviewed` (at least one region, and every region has a"
        " verdict), `has_false_calls` (at least one region judged `false_call`). A board"
        " with no region is neither unreviewed nor reviewed."
    ),
]
DispositionFilter = Annotated[
    Literal["pass", "repair", "scrap"] | None,
    Query(description="Only images with this current disposition."),
]


DateRange = Annotated[
    str | None,
    Query(
        max_length=64,
        pattern=PLAIN_TEXT_PATTERN,
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


def _cursor_problem(value: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", "cursor"), "msg": message, "input": value}]
    )


def image_cursor(cursor: str | None, page: int, status: str) -> ImageKey | None:
    """The position `cursor` names in the `/api/images` listing of `status`.

    Raises:
        RequestValidationError: (422) the cursor is malformed or another listing's, or
            `page` was given too.
    """
    if cursor is None:
        return None
    if page != 1:
        raise _cursor_problem(cursor, "give page or cursor, not both")
    try:
        return decode_image_cursor(cursor, status)
    except BadCursor as exc:
        raise _cursor_problem(cursor, str(exc)) from exc


def defect_cursor(cursor: str | None, page: int) -> DefectKey | None:
    """The position `cursor` names in `/api/query/defects`.

    Raises:
        RequestValidationError: (422) as `image_cursor`.
    """
    if cursor is None:
        return None
    if page != 1:
        raise _cursor_problem(cursor, "give page or cursor, not both")
    try:
        return decode_defect_cursor(cursor)
    except BadCursor as exc:
        raise _cursor_problem(cursor, str(exc)) from exc


async def defect_filters(
    viewer: ViewerDep,
    class_name: ClassName = None,
    date_range: DateRange = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    min_area: Annotated[AreaPixels, Query(description="Smallest area, pixels.")] = None,
    max_area: Annotated[AreaPixels, Query(description="Largest area, pixels.")] = None,
    img_unique_id: ImgUniqueIdFilter = None,
    batch_id: BatchIdFilter = None,
    review_state: ReviewState = None,
    disposition: DispositionFilter = None,
    context: ContextFilterDep = None,
) -> DefectFilters:
    """The filters of `/api/query/defects`, shared with the exports so both select the
    same regions (`review_state` and `disposition` select the regions' images). For the
    reviewer reading (`viewer`), the boards they audit or may audit count as unreviewed
    and undecided, and carry no first verdict, reason or disposition (docs/review.md).

    Raises:
        RequestValidationError: (422) as `resolve_dates`.
    """
    start_date, end_date = resolve_dates(date_range, start_date, end_date)
    return DefectFilters(
        class_name,
        start_date,
        end_date,
        min_area,
        max_area,
        img_unique_id,
        batch_id,
        review_state,
        disposition,
        context,
        viewer,
    )


DefectFiltersDep = Annotated[DefectFilters, Depends(defect_filters)]


def _context_query(what: str) -> Any:
    return Query(
        min_length=1,
        max_length=CONTEXT_TEXT_LENGTH,
        pattern=PLAIN_TEXT_PATTERN,
        description=f"Only inspections of this {what}, exactly as sent with the upload"
        " (docs/boards.md).",
    )


async def context_filter(
    board_serial: Annotated[str | None, _context_query("board serial")] = None,
    product: Annotated[str | None, _context_query("product")] = None,
    line: Annotated[str | None, _context_query("line")] = None,
    side: Annotated[
        BoardSide | None, Query(description="Only inspections of this side (docs/boards.md).")
    ] = None,
    lot: Annotated[str | None, _context_query("lot (work order)")] = None,
) -> ContextFilter | None:
    """The board-context filters of a listing, defect query or export; None when unset."""
    wanted = ContextFilter(board_serial, product, line, side, lot)
    return None if wanted.is_empty() else wanted


ContextFilterDep = Annotated[ContextFilter | None, Depends(context_filter)]

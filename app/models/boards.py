"""Response schemas of the board routes (`/api/boards/...`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.models.context import InspectionContext
from app.models.review import ImageReview
from app.models.schemas import ImageRegions

BoardOutcome = Literal["pass", "fail"]
OUTCOME_TEXT = (
    "`pass` or `fail` (docs/boards.md#pass-or-fail): the disposition decides when there is"
    " one (`pass` → pass; `repair`, `scrap` → fail); otherwise pass when the inspection"
    " found no region or every region has the verdict `false_call`. Null without a result."
)

_CONTEXT_EXAMPLE: dict[str, Any] = {"board_serial": "SN123456", "product": "CTRL-BOARD-A"}
_INSPECTION_EXAMPLE: dict[str, Any] = {
    "img_unique_id": "20260225_103045_ABC123",
    "timestamp": "2026-02-25T10:30:45Z",
    "status": "succeeded",
    "pass_number": 1,
    "kind": "first_pass",
    "outcome": "fail",
    "original_filename": "SN123456_top.jpg",
    "context": _CONTEXT_EXAMPLE,
    "total_defects": 2,
    "defect_classes": {"short": 1, "open": 1},
    "viewer_url": "http://localhost:8000/results/20260225_103045_ABC123",
}
_YIELD_EXAMPLE: dict[str, Any] = {
    "boards": 120,
    "first_pass_passed": 111,
    "first_pass_yield": 0.925,
    "reinspected_boards": 9,
    "reinspection_passed": 8,
    "reinspection_yield": 0.889,
}


def _example(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]})


class BoardInspection(BaseModel):
    """One inspection of a board, as its timeline shows it."""

    model_config = _example(_INSPECTION_EXAMPLE)

    img_unique_id: str
    timestamp: datetime = Field(description="When the agent accepted the image, UTC.")
    status: Literal["pending", "processing", "succeeded", "failed"]
    pass_number: int | None = Field(
        description="1 for the board's first inspection with a result (its first pass), 2 for"
        " the next (the first re-inspection, e.g. after repair)...; null without a result."
    )
    kind: Literal["first_pass", "reinspection"] | None = Field(
        description="`first_pass` for pass_number 1, `reinspection` after; null without a result."
    )
    outcome: BoardOutcome | None = Field(description=OUTCOME_TEXT)
    original_filename: str
    context: InspectionContext
    total_defects: int | None = None
    defect_classes: dict[str, int] | None = None
    regions: ImageRegions | None = Field(
        default=None, description="Its regions by class, each with its verdict."
    )
    disposition: ImageReview | None = None
    error: str | None = Field(default=None, description="Why the inspection failed.")
    viewer_url: str


class BoardTimeline(BaseModel):
    """Every inspection of one board, oldest first, and what its first pass decided."""

    model_config = _example(
        {
            "board_serial": "SN123456",
            "first_pass": "fail",
            "latest": "fail",
            "inspections": [_INSPECTION_EXAMPLE],
        }
    )

    board_serial: str
    first_pass: BoardOutcome | None = Field(
        description="The outcome of the board's first inspection with a result: what"
        " first-pass yield counts. Re-inspections never change it."
    )
    latest: BoardOutcome | None = Field(
        description="The outcome of its latest inspection with a result."
    )
    inspections: list[BoardInspection]
    truncated: bool = Field(
        default=False, description="More inspections exist than the MAX_TIMELINE shown."
    )


class YieldFigures(BaseModel):
    """First-pass and re-inspection yield of a group of boards (docs/boards.md)."""

    model_config = _example(_YIELD_EXAMPLE)

    boards: int = Field(description="Boards whose first inspection falls in the range.")
    first_pass_passed: int = Field(description="Of them, those whose first inspection passed.")
    first_pass_yield: float | None = Field(
        description="first_pass_passed / boards (0..1); null without boards."
    )
    reinspected_boards: int = Field(description="Of them, those inspected again since.")
    reinspection_passed: int = Field(
        description="Of the re-inspected boards, those whose latest inspection passed."
    )
    reinspection_yield: float | None = Field(
        description="reinspection_passed / reinspected_boards (0..1); null without any."
    )


class BoardYield(BaseModel):
    """Yield over a date range, in total, per product and per line (each board counted
    under the product and line of its first inspection; `null` key: not sent)."""

    model_config = _example(
        {
            "start_date": "2026-02-01",
            "end_date": "2026-02-25",
            "total": _YIELD_EXAMPLE,
            "by_product": {"CTRL-BOARD-A": _YIELD_EXAMPLE},
            "by_line": {"L3": _YIELD_EXAMPLE},
        }
    )

    start_date: date
    end_date: date
    total: YieldFigures
    by_product: dict[str, YieldFigures]
    by_line: dict[str, YieldFigures]


class ContextValues(BaseModel):
    """The board-context values inspections of a range were sent with: what the
    dashboard's filter pickers offer (each list sorted, at most MAX_CONTEXT_VALUES)."""

    model_config = _example(
        {
            "start_date": "2026-02-01",
            "end_date": "2026-02-25",
            "product": ["CTRL-BOARD-A", "CTRL-BOARD-B"],
            "line": ["L1", "L3"],
            "side": ["bottom", "top"],
            "lot": ["WO-2026-1207"],
            "truncated": False,
        }
    )

    start_date: date
    end_date: date
    product: list[str]
    line: list[str]
    side: list[str]
    lot: list[str]
    truncated: bool = Field(
        default=False, description="A field has more values than the lists show."
    )

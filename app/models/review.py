"""Request and response schemas of the review feature (verdicts, dispositions, queue)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.config import REASON_PATTERN, REASONS_MAX

Verdict = Literal["real", "false_call", "unsure"]
Disposition = Literal["pass", "repair", "scrap"]

EXAMPLE_ID = "20260225_103045_ABC123"
EXAMPLE_TIME = "2026-02-25T11:02:13Z"
COMMENT_MAX = 1000
# Any text but NUL (PostgreSQL refuses it); line breaks are fine in a comment.
COMMENT_PATTERN = r"^[^\x00]*$"

EXAMPLE_REGION_REVIEW = {
    "verdict": "false_call",
    "reason": "dust",
    "comment": "dust on the lens",
    "reviewer": "line-3-qc",
    "reviewed_at": EXAMPLE_TIME,
}
_PROGRESS = {"images": 40, "reviewed_images": 12, "regions": 310, "reviewed_regions": 95}
EXAMPLE_IMAGE_REVIEW = {
    "disposition": "repair",
    "comment": None,
    "reviewer": "line-3-qc",
    "reviewed_at": EXAMPLE_TIME,
}


def _example(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]}, extra="forbid")


REASON_VERDICTS = ("real", "false_call")
"""The verdicts a reason code may go with."""


def reason_field(description: str) -> Any:
    """A reason code field (REASON_PATTERN, null by default)."""
    return Field(default=None, max_length=32, pattern=REASON_PATTERN, description=description)


def check_reason_verdict(verdict: str | None, reason: str | None) -> None:
    """A reason only goes with a `real` or `false_call` verdict.

    Raises:
        ValueError: a reason with `unsure` or a withdrawal.
    """
    if reason is not None and verdict not in REASON_VERDICTS:
        raise ValueError("a reason goes only with a real or false_call verdict")


def _comment() -> Any:
    return Field(
        default=None,
        max_length=COMMENT_MAX,
        pattern=COMMENT_PATTERN,
        description=f"Optional note, at most {COMMENT_MAX} characters.",
    )


class VerdictIn(BaseModel):
    """A reviewer's verdict on one region; `null` withdraws it (the region is unreviewed
    again: what undo sends when there was no verdict before)."""

    model_config = _example(
        {"verdict": "false_call", "reason": "dust", "comment": "dust on the lens"}
    )

    verdict: Verdict | None = Field(
        description="`real` defect, `false_call` of the model, `unsure`; null withdraws it."
    )
    reason: str | None = reason_field(
        "Why: a code of the reason list (GET /api/review/reasons), with a `real` or"
        " `false_call` verdict only; a code not in the list is a 422 `unknown_reason`."
    )
    comment: str | None = _comment()

    @model_validator(mode="after")
    def _reason_with_verdict(self) -> VerdictIn:
        check_reason_verdict(self.verdict, self.reason)
        return self


class DispositionIn(BaseModel):
    """What happens to a reviewed board; `null` withdraws the disposition."""

    model_config = _example({"disposition": "repair", "comment": None})

    disposition: Disposition | None = Field(
        description="`pass`, `repair` or `scrap`; null withdraws it."
    )
    comment: str | None = _comment()


class RegionReview(BaseModel):
    """The current verdict on a region: who gave it and when (UTC)."""

    model_config = _example(EXAMPLE_REGION_REVIEW)

    verdict: Verdict
    reason: str | None = Field(default=None, description="The reason code, if one was given.")
    comment: str | None = None
    reviewer: str
    reviewed_at: datetime


class ImageReview(BaseModel):
    """The current disposition of a board: who gave it and when (UTC)."""

    model_config = _example(EXAMPLE_IMAGE_REVIEW)

    disposition: Disposition
    comment: str | None = None
    reviewer: str
    reviewed_at: datetime


class ImageReviewProgress(BaseModel):
    """How far one board's review is."""

    model_config = _example({"regions": 10, "reviewed_regions": 4})

    regions: int = Field(description="Defect regions of the image.")
    reviewed_regions: int = Field(description="Of them, those with a verdict.")


class VerdictOut(BaseModel):
    """A region's verdict after the change (`review` null: withdrawn) and the one before."""

    model_config = _example(
        {
            "region_unique_id": 1041,
            "img_unique_id": EXAMPLE_ID,
            "review": EXAMPLE_REGION_REVIEW,
            "previous": None,
            "progress": {"regions": 10, "reviewed_regions": 4},
        }
    )

    region_unique_id: int
    img_unique_id: str
    review: RegionReview | None
    previous: Verdict | None = Field(
        default=None, description="The verdict before this change (null: none)."
    )
    progress: ImageReviewProgress


class DispositionOut(BaseModel):
    """An image's disposition after the change (`review` null: withdrawn) and the one
    before."""

    model_config = _example(
        {"img_unique_id": EXAMPLE_ID, "review": EXAMPLE_IMAGE_REVIEW, "previous": None}
    )

    img_unique_id: str
    review: ImageReview | None
    previous: Disposition | None = Field(
        default=None, description="The disposition before (null: none)."
    )


class ReviewProgress(BaseModel):
    """How far the review of the images matching the filters is. An image counts once it
    has defect regions; it is reviewed when each of them has a verdict."""

    model_config = _example(_PROGRESS)

    images: int = Field(description="Images with defect regions (of the class asked for).")
    reviewed_images: int = Field(description="Of them, those whose every region has a verdict.")
    regions: int
    reviewed_regions: int


class ReviewBatch(BaseModel):
    """A batch the review queue can be narrowed to."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "batch_id": "B_20260225_103045_ABC123",
                    "created_at": "2026-02-25T10:30:45Z",
                    "total_images": 24,
                }
            ]
        },
    )

    batch_id: str
    created_at: datetime = Field(description="When the batch was accepted (UTC).")
    total_images: int = Field(description="Images the batch request accepted.")


class ReviewBatches(BaseModel):
    """The newest batches first, for the review queue's batch picker."""

    model_config = _example(
        {
            "batches": [
                {
                    "batch_id": "B_20260225_103045_ABC123",
                    "created_at": "2026-02-25T10:30:45Z",
                    "total_images": 24,
                }
            ]
        }
    )

    batches: list[ReviewBatch]


class ReviewNext(BaseModel):
    """The next image to review (`img_unique_id` null: none left) and the progress."""

    model_config = _example(
        {
            "img_unique_id": EXAMPLE_ID,
            "timestamp": "2026-02-25T10:30:45Z",
            "viewer_url": f"http://localhost:8000/results/{EXAMPLE_ID}?review=1",
            "progress": {
                "images": 40,
                "reviewed_images": 12,
                "regions": 310,
                "reviewed_regions": 95,
            },
        }
    )

    img_unique_id: str | None = None
    timestamp: datetime | None = None
    viewer_url: str | None = Field(default=None, description="The viewer in review mode, or null.")
    progress: ReviewProgress


class ReviewEventOut(BaseModel):
    """One change of a review: a region's verdict or the image's disposition."""

    model_config = _example(
        {
            "id": 77,
            "kind": "verdict",
            "region_unique_id": 1041,
            "value": "false_call",
            "previous": "real",
            "reason": "dust",
            "reviewer": "line-3-qc",
            "comment": "dust on the lens",
            "created_at": EXAMPLE_TIME,
        }
    )

    id: int
    kind: Literal["verdict", "disposition"]
    region_unique_id: int | None = None
    answer_region_id: int | None = Field(
        default=None,
        description="A verdict on a region only a shadow or replay answer has"
        " (`PUT /api/models/answer-regions/{id}/verdict`): that answer region's id"
        " (`region_unique_id` is null).",
    )
    value: str | None = Field(
        default=None, description="The new verdict or disposition (null: withdrawn)."
    )
    previous: str | None = None
    reason: str | None = Field(default=None, description="The verdict's reason code, if any.")
    reviewer: str
    comment: str | None = None
    created_at: datetime


class ReviewHistory(BaseModel):
    """The changes of one image's review, newest first."""

    model_config = _example(
        {
            "img_unique_id": EXAMPLE_ID,
            "disposition": EXAMPLE_IMAGE_REVIEW,
            "progress": {"regions": 10, "reviewed_regions": 4},
            "events": [
                {
                    "id": 77,
                    "kind": "verdict",
                    "region_unique_id": 1041,
                    "value": "false_call",
                    "previous": "real",
                    "reviewer": "line-3-qc",
                    "comment": "dust on the lens",
                    "created_at": EXAMPLE_TIME,
                }
            ],
        }
    )

    img_unique_id: str
    disposition: ImageReview | None = None
    progress: ImageReviewProgress
    events: list[ReviewEventOut]


_CLASS = {
    "class_name": "PI_Particle",
    "regions": 412,
    "reviewed": 120,
    "real": 30,
    "false_call": 85,
    "unsure": 5,
    "false_call_rate": 0.708,
}
_DAY = {
    "day": "2026-02-25",
    "images": 40,
    "reviewed_images": 12,
    "passed_images": 9,
    "reviewed_share": 0.3,
    "first_pass_yield": 0.75,
    "regions": 310,
    "reviewed_regions": 95,
    "false_calls": 70,
    "false_call_rate": 0.737,
}


class ClassReviewFigures(BaseModel):
    """One class's reviewed calls; `false_call_rate` = false calls / reviewed calls (null
    when none is reviewed)."""

    model_config = _example(_CLASS)

    class_name: str
    regions: int
    reviewed: int = Field(description="Regions with a verdict (real, false_call or unsure).")
    real: int
    false_call: int
    unsure: int
    false_call_rate: float | None


class DayReviewFigures(BaseModel):
    """The review figures of the images inspected on one UTC day; rates are null when
    their denominator is 0."""

    model_config = _example(_DAY)

    day: date
    images: int = Field(description="Images with defect regions.")
    reviewed_images: int = Field(description="Images whose every region has a verdict.")
    passed_images: int = Field(description="Reviewed images without a `real` verdict.")
    reviewed_share: float | None = Field(description="reviewed_images / images.")
    first_pass_yield: float | None = Field(description="passed_images / reviewed_images.")
    regions: int
    reviewed_regions: int
    false_calls: int
    false_call_rate: float | None = Field(description="false_calls / reviewed_regions.")


class TotalReviewFigures(DayReviewFigures):
    """The figures of the whole range (`day` is null)."""

    model_config = _example({**_DAY, "day": None})

    day: date | None = None  # type: ignore[assignment]


class ReviewFigures(BaseModel):
    """False-call rate (per class), first-pass yield and reviewed share over a range of
    inspection days (inclusive, UTC), per day and in total."""

    model_config = _example(
        {
            "start_date": "2026-02-25",
            "end_date": "2026-02-25",
            "class_name": None,
            "total": {**_DAY, "day": None},
            "classes": [_CLASS],
            "dispositions": {"pass": 9, "repair": 2, "scrap": 1},
            "days": [_DAY],
        }
    )

    start_date: date
    end_date: date
    class_name: str | None = None
    total: TotalReviewFigures
    classes: list[ClassReviewFigures] = Field(description="Most reviewed calls first.")
    dispositions: dict[str, int] = Field(description="Images per disposition.")
    days: list[DayReviewFigures]


_REASONS = {
    "reasons": [
        {"code": "dust", "key": "Shift+1"},
        {"code": "oxidation", "key": "Shift+2"},
    ],
    "source": "setting",
}


class ReviewReason(BaseModel):
    """One reason code and its key in review mode."""

    model_config = _example({"code": "dust", "key": "Shift+1"})

    code: str
    key: str = Field(description="The review-mode key that picks it: Shift+1 ... Shift+9.")


class ReviewReasons(BaseModel):
    """The reason codes a `real` or `false_call` verdict may carry, in key order, and
    where the list comes from: `admin` (stored by PUT /api/review/reasons; it replaces
    the setting) or `setting` (REVIEW_REASONS, while no admin list is stored)."""

    model_config = _example(_REASONS)

    reasons: list[ReviewReason]
    source: Literal["admin", "setting"]


class ReviewReasonsIn(BaseModel):
    """The admin's reason list, replacing the current one (verdicts keep the codes they
    were given). An empty list removes the admin list: REVIEW_REASONS applies again."""

    model_config = _example({"reasons": ["dust", "oxidation", "registration", "marking"]})

    reasons: list[Annotated[str, Field(max_length=32, pattern=REASON_PATTERN)]] = Field(
        max_length=REASONS_MAX,
        json_schema_extra={"uniqueItems": True},
        description=f"At most {REASONS_MAX} codes (one key each), no repeat; each 1-32"
        " lowercase letters, digits, `_` or `-`.",
    )

    @model_validator(mode="after")
    def _no_repeat(self) -> ReviewReasonsIn:
        if len(set(self.reasons)) != len(self.reasons):
            raise ValueError("a reason code is listed twice")
        return self


_PARETO_ROW = {"reason": "dust", "false_calls": 42, "share": 0.6, "cumulative_share": 0.6}


class ReasonCount(BaseModel):
    """False calls with one reason (`reason` null: given without one)."""

    model_config = _example(_PARETO_ROW)

    reason: str | None
    false_calls: int
    share: float = Field(description="false_calls / all false calls of the range.")
    cumulative_share: float = Field(description="Sum of the shares down to this row.")


class FalseCallReasons(BaseModel):
    """The Pareto of false calls by reason over a range of inspection days (UTC,
    inclusive): most frequent reason first, the calls without a reason last."""

    model_config = _example(
        {
            "start_date": "2026-02-25",
            "end_date": "2026-02-25",
            "class_name": None,
            "model_version": None,
            "false_calls": 70,
            "reasons": [_PARETO_ROW],
        }
    )

    start_date: date
    end_date: date
    class_name: str | None = None
    model_version: str | None = None
    false_calls: int = Field(description="Regions whose current verdict is false_call.")
    reasons: list[ReasonCount]

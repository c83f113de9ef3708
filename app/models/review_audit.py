"""Schemas of the reviewer figures (speed per reviewer and day, agreement) and of the
double-review sample (the audit queue and the second, blind verdicts)."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.models.review import EXAMPLE_ID, Verdict, check_reason_verdict, reason_field

_SPEED = {
    "reviewer": "line-3-qc",
    "day": "2026-02-25",
    "verdicts": 120,
    "timed_verdicts": 117,
    "seconds_median": 1.8,
    "seconds_p90": 4.2,
    "verdicts_per_hour": 1450.3,
}
_AGREEMENT = {
    "first_reviewer": "line-3-qc",
    "second_reviewer": "line-1-qc",
    "regions": 42,
    "observed_agreement": 0.881,
    "expected_agreement": 0.52,
    "kappa": 0.752,
}


def _example(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]}, extra="forbid")


class ReviewerSpeed(BaseModel):
    """How fast one reviewer gave verdicts (on one UTC day, or over the range when `day`
    is null). A verdict's seconds are the time since the same reviewer's previous review
    action (a verdict, a withdrawal or a disposition); a gap over the idle limit (a break)
    or a first action leaves the verdict untimed. Null figures: no timed verdict."""

    model_config = _example(_SPEED)

    reviewer: str
    day: date | None = None
    verdicts: int = Field(description="Verdicts given (withdrawals not counted).")
    timed_verdicts: int = Field(description="Of them, those with seconds (see above).")
    seconds_median: float | None = Field(description="Median seconds per timed verdict.")
    seconds_p90: float | None = Field(description="90th percentile of seconds per verdict.")
    verdicts_per_hour: float | None = Field(
        description="3600 × timed verdicts / their summed seconds (time at work, breaks out)."
    )


class ReviewerAgreement(BaseModel):
    """Agreement of first and second verdicts on the audited regions: Cohen's kappa,
    κ = (p_o − p_e) / (1 − p_e) (Cohen 1960, "A coefficient of agreement for nominal
    scales"), over the categories real, false_call, unsure. `kappa` is null when it is
    undefined (no region, or p_e = 1: both reviewers used one same category only).
    Reviewers null: every pair together."""

    model_config = _example(_AGREEMENT)

    first_reviewer: str | None = None
    second_reviewer: str | None = None
    regions: int = Field(description="Regions with both a first and a second verdict.")
    observed_agreement: float | None = Field(description="p_o: share of equal verdicts.")
    expected_agreement: float | None = Field(
        description="p_e: agreement expected by chance from each side's verdict shares."
    )
    kappa: float | None


class ReviewerFigures(BaseModel):
    """Reviewer speed per reviewer (over the range) and per reviewer and UTC day of the
    verdict, and the double-review agreement of the boards queued in the range."""

    model_config = _example(
        {
            "start_date": "2026-02-25",
            "end_date": "2026-02-25",
            "idle_gap_s": 300,
            "audit_rate": 0.05,
            "reviewers": [{**_SPEED, "day": None}],
            "days": [_SPEED],
            "agreement": {**_AGREEMENT, "first_reviewer": None, "second_reviewer": None},
            "pairs": [_AGREEMENT],
            "audits_queued": 6,
            "audits_done": 4,
        }
    )

    start_date: date
    end_date: date
    idle_gap_s: float = Field(description="Longer gaps between actions are breaks.")
    audit_rate: float = Field(description="REVIEW_AUDIT_RATE in force (0: sampling off).")
    reviewers: list[ReviewerSpeed] = Field(description="Per reviewer, most verdicts first.")
    days: list[ReviewerSpeed] = Field(description="Per reviewer and day, by day then name.")
    agreement: ReviewerAgreement = Field(description="All audited regions together.")
    pairs: list[ReviewerAgreement] = Field(description="Per (first, second) reviewer pair.")
    audits_queued: int = Field(description="Boards queued for a second review in the range.")
    audits_done: int = Field(description="Of them, those whose every region has a second verdict.")


class AuditNext(BaseModel):
    """The next board for this reviewer to audit (`img_unique_id` null: none) and how many
    queued boards are still open to them."""

    model_config = _example(
        {
            "img_unique_id": EXAMPLE_ID,
            "viewer_url": f"http://localhost:8000/results/{EXAMPLE_ID}?review=1&audit=1",
            "pending": 3,
        }
    )

    img_unique_id: str | None = None
    viewer_url: str | None = Field(default=None, description="The viewer in audit mode.")
    pending: int = Field(description="Queued boards this reviewer may still audit.")


class AuditRegion(BaseModel):
    """A region of an audited board with the auditor's own second verdict (never the
    first one)."""

    model_config = _example({"region_unique_id": 1041, "verdict": "real", "reason": None})

    region_unique_id: int
    verdict: Verdict | None = Field(
        default=None, description="This auditor's second verdict, or null."
    )
    reason: str | None = Field(default=None, description="Its reason code, if any.")


class AuditBoard(BaseModel):
    """An audited board as its auditor sees it: the regions and the second verdicts only."""

    model_config = _example(
        {
            "img_unique_id": EXAMPLE_ID,
            "regions": [
                {"region_unique_id": 1041, "verdict": "real", "reason": None},
                {"region_unique_id": 1042, "verdict": None, "reason": None},
            ],
            "reviewed_regions": 1,
        }
    )

    img_unique_id: str
    regions: list[AuditRegion]
    reviewed_regions: int = Field(description="Regions with a second verdict.")


class AuditVerdictIn(BaseModel):
    """The second reviewer's verdict on one region; null withdraws it."""

    model_config = _example({"verdict": "false_call", "reason": "dust"})

    verdict: Verdict | None = Field(description="`real`, `false_call`, `unsure`; null withdraws.")
    reason: str | None = reason_field(
        "A code of the reason list, with `real` or `false_call` only (as for first verdicts)."
    )

    @model_validator(mode="after")
    def _reason_with_verdict(self) -> AuditVerdictIn:
        check_reason_verdict(self.verdict, self.reason)
        return self


class AuditVerdictOut(BaseModel):
    """The second verdict after the change and the audit's progress on that board."""

    model_config = _example(
        {
            "region_unique_id": 1041,
            "img_unique_id": EXAMPLE_ID,
            "verdict": "real",
            "reason": None,
            "reviewer": "line-1-qc",
            "reviewed_regions": 1,
            "regions": 5,
        }
    )

    region_unique_id: int
    img_unique_id: str
    verdict: Verdict | None
    reason: str | None = None
    reviewer: str
    reviewed_regions: int
    regions: int

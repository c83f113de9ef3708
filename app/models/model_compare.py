"""Response schemas of the model list and the comparison of two model versions
(`GET /api/models`, `GET /api/models/compare`; formulas in docs/models.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

EXAMPLE_TIME = "2026-02-25T11:02:13Z"
EXAMPLE_A = "1.4.0+3f9a1c2b7d10"
EXAMPLE_B = "1.5.0-rc1"


def _example(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]}, extra="forbid")


_MODEL = {
    "model_name": "segformer-b2",
    "model_version": EXAMPLE_A,
    "primary_answers": 48210,
    "shadow_answers": 0,
    "replay_answers": 0,
    "first_seen": "2026-02-01T06:00:02Z",
    "last_seen": EXAMPLE_TIME,
}
_FAILED = {
    "model_service_url": "http://shadow-gpu:5000/",
    "failed_answers": 3,
    "last_failed_at": EXAMPLE_TIME,
    "last_error": "ModelServiceUnavailable: model service at http://shadow-gpu:5000/ is"
    " unreachable after 1 attempt in 0 s",
}


class ModelVersionOut(BaseModel):
    """One model name and version the agent has answers from (succeeded answers only)."""

    model_config = _example(_MODEL)

    model_name: str | None = Field(default=None, description="As the model service reported it.")
    model_version: str | None = Field(default=None, description="As the model service reported it.")
    primary_answers: int = Field(description="Inspections answered by it as the primary.")
    shadow_answers: int = Field(description="Shadow answers (SHADOW_SERVICE_URLS).")
    replay_answers: int = Field(description="Answers of replays of stored inputs.")
    first_seen: datetime | None = Field(default=None, description="Its first answer, UTC.")
    last_seen: datetime | None = Field(default=None, description="Its last answer, UTC.")


class FailedService(BaseModel):
    """A model service whose shadow or replay answers failed."""

    model_config = _example(_FAILED)

    model_service_url: str
    failed_answers: int
    last_failed_at: datetime
    last_error: str | None = None


class ModelList(BaseModel):
    """Every model version with answers, newest last seen first, and failing services."""

    model_config = _example({"models": [_MODEL], "failed_services": [_FAILED]})

    models: list[ModelVersionOut]
    failed_services: list[FailedService]


_SIDE = {
    "calls": 57,
    "confirmed_real": 40,
    "false_calls": 6,
    "unsure": 1,
    "unreviewed": 10,
    "missed_real": 2,
    "precision": 0.8696,
    "relative_recall": 0.9524,
}


class SideFigures(BaseModel):
    """One model version's calls of one defect class, judged by the reviewers' verdicts
    (formulas in docs/models.md)."""

    model_config = _example(_SIDE)

    calls: int = Field(
        description="Its regions of this class on the compared images: matched + its only +"
        " its overlapping."
    )
    confirmed_real: int = Field(description="Its calls a reviewer judged `real`.")
    false_calls: int = Field(description="Its calls a reviewer judged `false_call`.")
    unsure: int = Field(description="Its calls judged `unsure`.")
    unreviewed: int = Field(description="Its calls without a verdict.")
    missed_real: int = Field(
        description="Real defects it missed: calls of the other version only (neither"
        " matched nor overlapping one of its calls), judged `real`."
    )
    precision: float | None = Field(
        default=None,
        description="confirmed_real / (confirmed_real + false_calls); null with no verdict.",
    )
    relative_recall: float | None = Field(
        default=None,
        description="confirmed_real / (confirmed_real + missed_real): its share of the real"
        " defects either version found; null when neither found a confirmed one.",
    )


_CLASS = {
    "class_name": "short",
    "matched": 50,
    "a_only": 7,
    "b_only": 3,
    "a_overlapping": 0,
    "b_overlapping": 2,
    "a": _SIDE,
    "b": _SIDE,
}

_OVERLAPPING = (
    " that match none of {other}'s but overlap one of the same class: the same defect,"
    " outlined differently (a fragment of it, or grown over it); a miss of neither version."
)


class ClassComparison(BaseModel):
    """One defect class: regions both versions found (matched), found by A only, by B only,
    overlapping (same defect, different extent), and each version's figures."""

    model_config = _example(_CLASS)

    class_name: str
    matched: int = Field(description="Pairs of regions, one of each version (IoU ≥ min_iou).")
    a_only: int = Field(description="A's regions that match and overlap none of B's.")
    b_only: int = Field(description="B's regions that match and overlap none of A's.")
    a_overlapping: int = Field(description="A's regions" + _OVERLAPPING.format(other="B"))
    b_overlapping: int = Field(description="B's regions" + _OVERLAPPING.format(other="A"))
    a: SideFigures
    b: SideFigures


_DISAGREEMENT = {
    "img_unique_id": "20260225_103045_ABC123",
    "timestamp": EXAMPLE_TIME,
    "a_only": 1,
    "b_only": 0,
    "a_overlapping": 0,
    "b_overlapping": 2,
    "a_answer_id": None,
    "b_answer_id": 1042,
    "viewer_url": "/viewer/20260225_103045_ABC123?compare=1042",
}


class Disagreement(BaseModel):
    """An image on which the two versions disagree: a call of one that the other lacks,
    or one they outline differently (overlapping)."""

    model_config = _example(_DISAGREEMENT)

    img_unique_id: str
    timestamp: datetime
    a_only: int
    b_only: int
    a_overlapping: int = Field(description="A's regions overlapping one of B's unmatched.")
    b_overlapping: int = Field(description="B's regions overlapping one of A's unmatched.")
    a_answer_id: int | None = Field(
        default=None, description="A's stored answer; null: A is the primary."
    )
    b_answer_id: int | None = Field(
        default=None, description="B's stored answer; null: B is the primary."
    )
    viewer_url: str = Field(description="The viewer with both answers overlaid.")


class ModelComparison(BaseModel):
    """Two model versions on the images both answered (within the filters), per class."""

    model_config = _example(
        {
            "a": EXAMPLE_A,
            "b": EXAMPLE_B,
            "min_iou": 0.5,
            "images": 1200,
            "classes": [_CLASS],
            "totals": _CLASS | {"class_name": "all"},
            "disagreeing_images": 31,
            "disagreements": [_DISAGREEMENT],
        }
    )

    a: str
    b: str
    min_iou: float = Field(description="MODEL_MATCH_MIN_IOU: the least IoU of a match.")
    images: int = Field(description="Images both versions answered, within the filters.")
    classes: list[ClassComparison]
    totals: ClassComparison = Field(description="All classes together (`class_name` `all`).")
    disagreeing_images: int = Field(description="Images on which they disagree.")
    disagreements: list[Disagreement] = Field(
        description="The newest disagreeing images (at most `limit`), newest first."
    )

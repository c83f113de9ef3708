"""Response schemas of one stored answer of a model service other than the primary one
(`GET /api/models/answers/{answer_id}`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_REGION = {
    "answer_region_id": 88,
    "region_id": 1,
    "class_name": "short",
    "bbox": [120, 48, 14, 9],
    "area_pixels": 96,
    "centroid": [126.5, 52.0],
    "confidence": None,
    "matched_region_unique_id": 1041,
    "match_iou": 0.83,
    "verdict": None,
}


def _example(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]}, extra="forbid")


class AnswerRegionOut(BaseModel):
    """One region of a stored answer (pixels), and the primary region it matches."""

    model_config = _example(_REGION)

    answer_region_id: int
    region_id: int = Field(description="The model's own region id.")
    class_name: str
    bbox: list[int] = Field(description="[x, y, width, height], pixels.")
    area_pixels: int
    centroid: list[float] = Field(description="[x, y], pixels.")
    confidence: float | None = None
    matched_region_unique_id: int | None = Field(
        default=None,
        description="The primary region it matches (same class, IoU >= MODEL_MATCH_MIN_IOU).",
    )
    match_iou: float | None = None
    verdict: Literal["real", "false_call", "unsure"] | None = Field(
        default=None,
        description="A reviewer's verdict on it when unmatched (a matched region takes its"
        " primary region's verdict).",
    )
    reason: str | None = Field(
        default=None, description="The reason code sent with that verdict, if any."
    )


class AnswerOut(BaseModel):
    """A stored answer of a shadow or replayed model service, with its regions."""

    model_config = _example(
        {
            "answer_id": 1042,
            "img_unique_id": "20260225_103045_ABC123",
            "role": "shadow",
            "model_service_url": "http://shadow-gpu:5000/",
            "model_name": "segformer-b2",
            "model_version": "1.5.0-rc1",
            "status": "succeeded",
            "error": None,
            "model_service_seconds": 0.41,
            "created_at": "2026-02-25T11:02:13Z",
            "regions": [_REGION],
        }
    )

    answer_id: int
    img_unique_id: str
    role: Literal["shadow", "replay"]
    model_service_url: str
    model_name: str | None = None
    model_version: str | None = None
    status: Literal["succeeded", "failed"]
    error: str | None = None
    model_service_seconds: float | None = Field(default=None, description="Round trip, seconds.")
    created_at: datetime
    regions: list[AnswerRegionOut]

"""API models of the golden-board library (docs/golden.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EXAMPLE_GOLDEN_ID = "12000052"


class GoldenOut(BaseModel):
    """One golden image of the library."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "golden_id": EXAMPLE_GOLDEN_ID,
                    "product": None,
                    "side": None,
                    "file_name": "12000052.jpg",
                    "media_type": "image/jpeg",
                    "image_width": 640,
                    "image_height": 640,
                    "size_bytes": 61234,
                    "source": "api",
                    "created_at": "2026-12-07T18:30:00Z",
                    "updated_at": "2026-12-07T18:30:00Z",
                    "image_url": "http://127.0.0.1:8000/api/golden/12000052/image",
                }
            ]
        }
    )

    golden_id: str
    product: str | None = Field(
        default=None, description="The product (null until the line sends it)."
    )
    side: str | None = Field(
        default=None, description="The board side (null until the line sends it)."
    )
    file_name: str = Field(
        description="The file's name; a model service's `provenance.template` is matched to it."
    )
    media_type: str
    image_width: int = Field(description="Pixels.")
    image_height: int = Field(description="Pixels.")
    size_bytes: int
    source: Literal["api", "folder"] = Field(
        description="`api`: added with PUT /api/golden/{golden_id}; `folder`: a GOLDEN_DIR file."
    )
    created_at: datetime
    updated_at: datetime
    image_url: str = Field(description="The golden image (signed when keys are required).")


class GoldenOffset(BaseModel):
    """Golden pixel (x, y) lies at (x + dx, y + dy) in the inspected image, pixels."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"dx": -0.16, "dy": -0.28}]})

    dx: float
    dy: float


class ImageGolden(BaseModel):
    """The golden board of an inspection and its registration."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "img_unique_id": "20260225_103045_ABC123",
                    "golden_id": EXAMPLE_GOLDEN_ID,
                    "product": None,
                    "side": None,
                    "offset": {"dx": -0.16, "dy": -0.28},
                    "score": 0.9339,
                    "registration": "model",
                    "image_url": "http://127.0.0.1:8000/api/golden/12000052/image",
                    "golden_width": 640,
                    "golden_height": 640,
                }
            ]
        }
    )

    img_unique_id: str
    golden_id: str
    product: str | None = None
    side: str | None = None
    offset: GoldenOffset
    score: float | None = Field(
        description="Normalised cross-correlation of the inspected image and the registered"
        " golden image, -1..1 (null: the model service reported none)."
    )
    registration: Literal["model", "agent"] = Field(
        description="`model`: the model service's template and offset; `agent`: the agent's"
        " phase correlation (scikit-image, 0.1 px)."
    )
    image_url: str = Field(description="The golden image (signed when keys are required).")
    golden_width: int = Field(description="Pixels.")
    golden_height: int = Field(description="Pixels.")

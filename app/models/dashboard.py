"""Response models of the dashboard aggregates (`/api/dashboard/*`)."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_SHARE = {
    "class_name": "PI_Particle",
    "images": 96,
    "regions": 412,
    "total_area_pixels": 7311,
    "share": 0.41,
    "cumulative_share": 0.41,
}


def _example(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]})


class ClassShare(BaseModel):
    """One defect class's weight in the period, for the bar and Pareto charts."""

    model_config = _example(_SHARE)

    class_name: str
    images: int = Field(description="Images with at least one region of this class.")
    regions: int
    total_area_pixels: int
    share: float = Field(description="This class's regions / all regions, 0..1.")
    cumulative_share: float = Field(
        description="Share of this class and every class with more regions, 0..1 (Pareto line)."
    )


class DashboardSummary(BaseModel):
    """Totals over a date range (inclusive UTC days; open ends mean all time)."""

    model_config = _example(
        {
            "start_date": "2026-02-01",
            "end_date": "2026-02-25",
            "total_images": 145,
            "images_with_defects": 120,
            "total_defects": 1015,
            "total_area_pixels": 18830,
            "classes": [_SHARE],
        }
    )

    start_date: date | None
    end_date: date | None
    total_images: int
    images_with_defects: int
    total_defects: int
    total_area_pixels: int
    classes: list[ClassShare] = Field(description="Most regions first.")


class DayCount(BaseModel):
    """Inspections and defect regions of one UTC day."""

    model_config = _example(
        {"day": "2026-02-25", "images": 12, "defects": 61, "by_class": {"PI_Particle": 40}}
    )

    day: date
    images: int
    defects: int
    by_class: dict[str, int]


class DefectsPerDay(BaseModel):
    """One row per day of the range, days without inspections included as zeros."""

    model_config = _example(
        {
            "start_date": "2026-02-25",
            "end_date": "2026-02-25",
            "class_name": "PI_Particle",
            "days": [
                {"day": "2026-02-25", "images": 12, "defects": 61, "by_class": {"PI_Particle": 40}}
            ],
        }
    )

    start_date: date
    end_date: date
    class_name: str | None
    days: list[DayCount]


class Heatmap(BaseModel):
    """Region centroids counted on a bins × bins grid over the normalised image area.

    `counts[row][col]`: row 0 is the top of the image, col 0 its left edge; a centroid at
    (x, y) of a W × H image falls in col ⌊bins·x/W⌋, row ⌊bins·y/H⌋.
    """

    model_config = _example(
        {
            "bins": 4,
            "class_name": "PI_Particle",
            "start_date": "2026-02-01",
            "end_date": "2026-02-25",
            "total_regions": 7,
            "max_count": 3,
            "counts": [[0, 1, 0, 0], [0, 3, 1, 0], [0, 0, 0, 0], [2, 0, 0, 0]],
        }
    )

    bins: int
    class_name: str | None
    start_date: date | None
    end_date: date | None
    total_regions: int
    max_count: int
    counts: list[list[int]]

"""Response models of the dashboard aggregates (`/api/dashboard/*`)."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field


class ClassShare(BaseModel):
    """One defect class's weight in the period, for the bar and Pareto charts."""

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

    start_date: date | None
    end_date: date | None
    total_images: int
    images_with_defects: int
    total_defects: int
    total_area_pixels: int
    classes: list[ClassShare] = Field(description="Most regions first.")


class DayCount(BaseModel):
    """Inspections and defect regions of one UTC day."""

    day: date
    images: int
    defects: int
    by_class: dict[str, int]


class DefectsPerDay(BaseModel):
    """One row per day of the range, days without inspections included as zeros."""

    start_date: date
    end_date: date
    class_name: str | None
    days: list[DayCount]


class Heatmap(BaseModel):
    """Region centroids counted on a bins × bins grid over the normalised image area.

    `counts[row][col]`: row 0 is the top of the image, col 0 its left edge; a centroid at
    (x, y) of a W × H image falls in col ⌊bins·x/W⌋, row ⌊bins·y/H⌋.
    """

    bins: int
    class_name: str | None
    start_date: date | None
    end_date: date | None
    total_regions: int
    max_count: int
    counts: list[list[int]]

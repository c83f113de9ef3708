"""Rollup tables: per-UTC-day sums of the inspection tables, kept up to date by triggers.

The dashboard and `/api/stats` read these instead of scanning a million images and
millions of regions. Triggers (migrations 20261202_0011 and 20261202_0013) keep them equal
to the direct aggregates as rows of `images`, `classes`, `regions` and `inspections` are
inserted or deleted (cascades included); `aoi_rollups_rebuild()` recomputes them from
scratch. See `docs/database.md` ("Rollups").

Every table is split by `model_version`: the version the image's `inspections` row names
(for `TimingsDaily`, the ledger row's own), '' when there is none or it names none. A
reader without a model version filter sums over it; one with a filter reads its rows.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Date, Double, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.database import Base

HEATMAP_ROLLUP_BINS = 32
"""Cells per side of the stored centroid grid; a heatmap whose `bins` divides it
(4, 8, 16, 32) is summed from the rollup, any other is computed from `regions`."""


class ImagesDaily(Base):
    """Per UTC day (of `images.timestamp`): images stored, those with at least one region,
    and the sum of their `processing_time_seconds` (seconds)."""

    __tablename__ = "rollup_images_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    model_version: Mapped[str] = mapped_column(String(128), primary_key=True)
    images: Mapped[int] = mapped_column(BigInteger)
    images_with_defects: Mapped[int] = mapped_column(BigInteger)
    processing_seconds: Mapped[float] = mapped_column(Double)


class ClassesDaily(Base):
    """Per UTC day and class name: images with that class (an image has one `classes` row
    per class name), their regions (`classes.total_regions`) and area in pixels."""

    __tablename__ = "rollup_classes_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    class_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(128), primary_key=True)
    images: Mapped[int] = mapped_column(BigInteger)
    regions: Mapped[int] = mapped_column(BigInteger)
    area_pixels: Mapped[int] = mapped_column(BigInteger)


class HeatmapDaily(Base):
    """Region rows per class, UTC day and cell of a 32 × 32 grid of centroids normalised
    by the image's width and height (row 0 = top)."""

    __tablename__ = "rollup_heatmap_daily"

    class_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    cell_row: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    cell_col: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    model_version: Mapped[str] = mapped_column(String(128), primary_key=True)
    regions: Mapped[int] = mapped_column(BigInteger)


class HeatmapDailyAll(Base):
    """As `HeatmapDaily` over every class (what an unfiltered heatmap and region count
    read: a 30-day sum is 30,720 rows instead of one per class too)."""

    __tablename__ = "rollup_heatmap_daily_all"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    cell_row: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    cell_col: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    model_version: Mapped[str] = mapped_column(String(128), primary_key=True)
    regions: Mapped[int] = mapped_column(BigInteger)


class TimingsDaily(Base):
    """Per UTC day (of `inspections.created_at`) over `succeeded` ledger rows: how many, and
    count and sum (seconds) of non-null `model_service_seconds` and `total_seconds`."""

    __tablename__ = "rollup_timings_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    model_version: Mapped[str] = mapped_column(String(128), primary_key=True)
    succeeded: Mapped[int] = mapped_column(BigInteger)
    model_service_n: Mapped[int] = mapped_column(BigInteger)
    model_service_seconds: Mapped[float] = mapped_column(Double)
    total_n: Mapped[int] = mapped_column(BigInteger)
    total_seconds: Mapped[float] = mapped_column(Double)

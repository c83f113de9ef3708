"""Dashboard aggregates: every number is computed in SQL (GROUP BY, window functions,
width_bucket), never by loading rows into Python.

Days are UTC days, as everywhere in the API. The numbers are sums of the daily rollups
(`app/models/rollups.py`, kept by triggers), so a query reads one row per day (and
class, heatmap cell and model version) whatever the number of images: without a
`model_version` filter summed over the versions, with one only that version's rows. A
heatmap grid the stored 32 × 32 one cannot be summed into is computed from the
inspection tables directly; so is every answer with a board-context filter (product,
line, side, lot, serial: the rollups do not keep the context; the filtered images are
found by the `inspection_contexts` indexes), and everything when the repository is built
with `use_rollups=False` (the reference the tests compare the rollups with: the same numbers,
read from every matching row).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Date, cast, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import AgentError
from app.models.dashboard import (
    ClassShare,
    DashboardSummary,
    DayCount,
    DefectsPerDay,
    Heatmap,
)
from app.models.database import DefectClass, Image, Inspection, Region
from app.models.rollups import (
    HEATMAP_ROLLUP_BINS,
    ClassesDaily,
    HeatmapDaily,
    HeatmapDailyAll,
    ImagesDaily,
)
from app.services.boards.repository import ContextFilter, context_condition
from app.services.database.queries import class_name_spellings, day_end, day_start, rollup_day_range

DEFAULT_DAYS = 30
"""Length of the defects-per-day range when no start date is given, days."""
MAX_DAYS = 731
"""Longest defects-per-day range, days (two years: one point per day stays readable)."""


class BadDateRange(AgentError):
    """The date range is reversed or too long."""

    status_code = 422
    error = "invalid_request"


@dataclass(frozen=True)
class Period:
    """Inclusive UTC days; `None` leaves that end open."""

    start_date: date | None = None
    end_date: date | None = None
    # Only results of this model version (as the model service reported it).
    model_version: str | None = None
    # Only inspections with this board context (None: every inspection).
    context: ContextFilter | None = None

    def check(self) -> Period:
        """This period, after checking it.

        Raises:
            BadDateRange: the start is after the end.
        """
        if self.start_date and self.end_date and self.start_date > self.end_date:
            raise BadDateRange(f"start_date {self.start_date} is after end_date {self.end_date}")
        return self


def utc_day(column: Any) -> Any:
    """The UTC calendar day of a timestamptz column, as SQL `date`."""
    return cast(func.timezone("UTC", column), Date)


def daily_range(
    start: date | None, end: date | None, max_days: int = MAX_DAYS
) -> tuple[date, date, int]:
    """The days of a per-day chart or figure: (first, last, number of days). Without an
    end, today (UTC); without a start, the DEFAULT_DAYS days up to the end (clamped at year
    1, so an end date in year 1 does not overflow `date`).

    Raises:
        BadDateRange: the start is after the end, or the range is over `max_days` days.
    """
    end = end or datetime.now(UTC).date()
    start = start or end - timedelta(days=min(DEFAULT_DAYS - 1, end.toordinal() - 1))
    if start > end:
        raise BadDateRange(f"start_date {start} is after end_date {end}")
    span = (end - start).days + 1
    if span > max_days:
        raise BadDateRange(f"the range is {span} days; at most {max_days} days are shown")
    return start, end, span


class DashboardRepository:
    """Aggregate queries over images, classes and regions.

    `use_rollups=False` computes every answer from the inspection tables (seconds at a
    million images): the reference for tests and benchmarks, never used by a route.
    """

    def __init__(self, session: AsyncSession, use_rollups: bool = True) -> None:
        self.session = session
        self.use_rollups = use_rollups

    @staticmethod
    def _in_period(period: Period) -> list[ColumnElement[bool]]:
        """WHERE conditions keeping images whose timestamp falls in the period."""
        conditions = []
        if period.start_date:
            conditions.append(Image.timestamp >= day_start(period.start_date))
        if period.end_date and (end := day_end(period.end_date)) is not None:
            conditions.append(Image.timestamp < end)
        if period.model_version:
            conditions.append(
                exists().where(
                    Inspection.img_unique_id == Image.img_unique_id,
                    Inspection.model_version == period.model_version,
                )
            )
        if period.context is not None:
            conditions.append(context_condition(Image.img_unique_id, period.context))
        return conditions

    def _rollups(self, period: Period) -> bool:
        """Whether the daily rollups answer for `period`: not with a board-context filter
        (the rollups count every inspection of a day, whatever its board)."""
        return self.use_rollups and period.context is None

    @staticmethod
    def _rollup_rows(table: Any, period: Period) -> list[ColumnElement[bool]]:
        """WHERE conditions keeping rollup rows whose `day` falls in the period and, with a
        model version filter, that count that version."""
        conditions = rollup_day_range(table.day, period.start_date, period.end_date)
        if period.model_version:
            conditions.append(table.model_version == period.model_version)
        return conditions

    async def image_totals(self, period: Period) -> tuple[int, int]:
        """(images inspected, images with at least one region) in the period."""
        if self._rollups(period):
            stmt = select(
                func.coalesce(func.sum(ImagesDaily.images), 0),
                func.coalesce(func.sum(ImagesDaily.images_with_defects), 0),
            ).where(*self._rollup_rows(ImagesDaily, period))
            images, with_defects = (await self.session.execute(stmt)).one()
            return int(images), int(with_defects)
        has_defect = (
            select(func.coalesce(func.sum(DefectClass.total_regions), 0))
            .where(DefectClass.img_unique_id == Image.img_unique_id)
            .scalar_subquery()
        )
        stmt = (
            select(func.count(), func.count().filter(has_defect > 0))
            .select_from(Image)
            .where(*self._in_period(period))
        )
        images, with_defects = (await self.session.execute(stmt)).one()
        return int(images), int(with_defects)

    async def class_shares(self, period: Period) -> list[tuple[Any, ...]]:
        """Per class: (name, images, regions, area px, running total of regions), most regions
        first; the running total is a window over the grouped sums (for the Pareto line)."""
        if self._rollups(period):
            total = func.sum(ClassesDaily.regions)
            rollup = (
                select(
                    ClassesDaily.class_name,
                    func.sum(ClassesDaily.images),
                    total,
                    func.sum(ClassesDaily.area_pixels),
                    func.sum(total).over(order_by=(total.desc(), ClassesDaily.class_name)),
                )
                .where(*self._rollup_rows(ClassesDaily, period))
                .group_by(ClassesDaily.class_name)
                .having(func.sum(ClassesDaily.images) > 0)
                .order_by(total.desc(), ClassesDaily.class_name)
            )
            return [tuple(row) for row in (await self.session.execute(rollup))]
        regions = func.sum(DefectClass.total_regions)
        stmt = (
            select(
                DefectClass.class_name,
                func.count(func.distinct(DefectClass.img_unique_id)),
                regions,
                func.sum(DefectClass.total_area_pixels),
                func.sum(regions).over(order_by=(regions.desc(), DefectClass.class_name)),
            )
            .join(Image, Image.img_unique_id == DefectClass.img_unique_id)
            .group_by(DefectClass.class_name)
            .order_by(regions.desc(), DefectClass.class_name)
        )
        stmt = stmt.where(*self._in_period(period))
        return [tuple(row) for row in (await self.session.execute(stmt))]

    async def images_per_day(self, period: Period) -> dict[date, int]:
        """Images inspected on each UTC day of the period that has any."""
        if self._rollups(period):
            images = func.sum(ImagesDaily.images)
            rollup = (
                select(ImagesDaily.day, images)
                .where(*self._rollup_rows(ImagesDaily, period))
                .group_by(ImagesDaily.day)
                .having(images > 0)
            )
            return {d: int(n) for d, n in (await self.session.execute(rollup)).all()}
        day = utc_day(Image.timestamp).label("day")
        stmt = select(day, func.count()).where(*self._in_period(period)).group_by(day)
        return {d: int(n) for d, n in (await self.session.execute(stmt)).all()}

    async def regions_per_day_and_class(
        self, period: Period, class_name: str | None
    ) -> list[tuple[date, str, int]]:
        """(UTC day, class name, regions) for every day and class with regions."""
        if self._rollups(period):
            rollup = (
                select(ClassesDaily.day, ClassesDaily.class_name, func.sum(ClassesDaily.regions))
                .where(*self._rollup_rows(ClassesDaily, period))
                .group_by(ClassesDaily.day, ClassesDaily.class_name)
                .having(func.sum(ClassesDaily.images) > 0)
            )
            if class_name:
                spellings = await class_name_spellings(self.session, class_name)
                rollup = rollup.where(ClassesDaily.class_name.in_(spellings))
            rows = await self.session.execute(rollup)
            return [(d, name, int(n)) for d, name, n in rows.all()]
        day = utc_day(Image.timestamp).label("day")
        stmt = (
            select(day, DefectClass.class_name, func.sum(DefectClass.total_regions))
            .join(Image, Image.img_unique_id == DefectClass.img_unique_id)
            .group_by(day, DefectClass.class_name)
        )
        if class_name:
            spellings = await class_name_spellings(self.session, class_name)
            stmt = stmt.where(DefectClass.class_name.in_(spellings))
        rows = await self.session.execute(stmt.where(*self._in_period(period)))
        return [(d, name, int(n)) for d, name, n in rows.all()]

    async def centroid_grid(
        self, period: Period, class_name: str | None, bins: int
    ) -> list[tuple[int, int, int]]:
        """(row, col, regions) of the non-empty cells of a bins × bins grid of centroids
        normalised by image width and height; rows and cols are 0-based (a centroid left of
        or above the image counts as -1 here, as `width_bucket` puts it)."""
        if self._rollups(period) and HEATMAP_ROLLUP_BINS % bins == 0:
            return await self._rollup_grid(period, class_name, bins)
        col = (
            func.least(
                func.width_bucket(Region.centroid_x / Image.image_width, 0.0, 1.0, bins), bins
            )
            - 1
        )
        row = (
            func.least(
                func.width_bucket(Region.centroid_y / Image.image_height, 0.0, 1.0, bins), bins
            )
            - 1
        )
        stmt = (
            select(row.label("row"), col.label("col"), func.count())
            .select_from(Region)
            .join(Image, Image.img_unique_id == Region.img_unique_id)
            .group_by("row", "col")
        )
        if class_name:
            stmt = stmt.join(
                DefectClass, DefectClass.class_unique_id == Region.class_unique_id
            ).where(
                DefectClass.class_name.in_(await class_name_spellings(self.session, class_name))
            )
        rows = await self.session.execute(stmt.where(*self._in_period(period)))
        return [(int(r), int(c), int(n)) for r, c, n in rows.all()]

    async def _rollup_grid(
        self, period: Period, class_name: str | None, bins: int
    ) -> list[tuple[int, int, int]]:
        """`centroid_grid` summed from the stored 32 × 32 grid: a cell of a `bins` grid
        (`bins` divides 32) is a square of (32 / bins)² stored cells. Exact: scaling by a
        power of two changes no rounding, so floor(u·32) div k = floor(u·32/k)."""
        step = HEATMAP_ROLLUP_BINS // bins
        table: Any = HeatmapDaily if class_name else HeatmapDailyAll
        row = (table.cell_row // step).label("row") if step > 1 else table.cell_row.label("row")
        col = (table.cell_col // step).label("col") if step > 1 else table.cell_col.label("col")
        stmt = (
            select(row, col, func.sum(table.regions))
            .where(*self._rollup_rows(table, period))
            .group_by("row", "col")
            .having(func.sum(table.regions) > 0)
        )
        if class_name:
            spellings = await class_name_spellings(self.session, class_name)
            stmt = stmt.where(HeatmapDaily.class_name.in_(spellings))
        rows = await self.session.execute(stmt)
        return [(int(r), int(c), int(n)) for r, c, n in rows.all()]


class DashboardService:
    """Builds the dashboard's response models from the repository's aggregates
    (`use_rollups=False`: computed from the tables, see `DashboardRepository`)."""

    def __init__(self, session: AsyncSession, use_rollups: bool = True) -> None:
        self.repository = DashboardRepository(session, use_rollups)

    async def summary(self, period: Period) -> DashboardSummary:
        """Image and region totals and each class's share, most regions first.

        Raises:
            BadDateRange: the start is after the end.
        """
        period = period.check()
        images, with_defects = await self.repository.image_totals(period)
        rows = await self.repository.class_shares(period)
        total = sum(int(r[2] or 0) for r in rows)
        classes = [
            ClassShare(
                class_name=name,
                images=int(n_images),
                regions=int(regions or 0),
                total_area_pixels=int(area or 0),
                share=(int(regions or 0) / total) if total else 0.0,
                cumulative_share=(int(running or 0) / total) if total else 0.0,
            )
            for name, n_images, regions, area, running in rows
        ]
        return DashboardSummary(
            start_date=period.start_date,
            end_date=period.end_date,
            total_images=images,
            images_with_defects=with_defects,
            total_defects=total,
            total_area_pixels=sum(c.total_area_pixels for c in classes),
            classes=classes,
        )

    async def defects_per_day(self, period: Period, class_name: str | None) -> DefectsPerDay:
        """Images and regions per UTC day; the range defaults to the last 30 days (today
        included) and every day of it gets a row.

        Raises:
            BadDateRange: the start is after the end, or the range is over 731 days.
        """
        start, end, span = daily_range(period.start_date, period.end_date)
        period = replace(period, start_date=start, end_date=end)
        images = await self.repository.images_per_day(period)
        by_day: dict[date, dict[str, int]] = {}
        for day, name, regions in await self.repository.regions_per_day_and_class(
            period, class_name
        ):
            by_day.setdefault(day, {})[name] = regions
        days = []
        for offset in range(span):
            day = start + timedelta(days=offset)
            counts = by_day.get(day, {})
            days.append(
                DayCount(
                    day=day,
                    images=images.get(day, 0),
                    defects=sum(counts.values()),
                    by_class=dict(sorted(counts.items())),
                )
            )
        return DefectsPerDay(start_date=start, end_date=end, class_name=class_name, days=days)

    async def heatmap(self, period: Period, class_name: str | None, bins: int) -> Heatmap:
        """Centroid counts on a bins × bins grid over the image area (all images' sizes
        normalised to 0..1).

        Raises:
            BadDateRange: the start is after the end.
        """
        period = period.check()
        counts = [[0] * bins for _ in range(bins)]
        for row, col, n in await self.repository.centroid_grid(period, class_name, bins):
            counts[max(row, 0)][max(col, 0)] += n
        flat = [n for line in counts for n in line]
        return Heatmap(
            bins=bins,
            class_name=class_name,
            start_date=period.start_date,
            end_date=period.end_date,
            total_regions=sum(flat),
            max_count=max(flat, default=0),
            counts=counts,
        )

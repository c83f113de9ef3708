"""Subgroup counts for the control charts, computed in SQL.

Per-day subgroups in UTC read the daily rollups (`rollup_images_daily`,
`rollup_classes_daily`): one row per day. Subgroups per shift, or per day in another time
zone (SPC_TIMEZONE), group the `images` rows by their local day and shift in SQL (one
pass over the period's images, by the `images.timestamp` index).

A board is an inspection (an `images` row). A board-context filter (serial, product,
line, side, lot: `inspection_contexts`) keeps the inspections sent with that context; the
rollups do not keep the context, so a filtered chart reads the `images` rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Date, Time, case, cast, exists, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.database import DefectClass, Image, Inspection
from app.models.rollups import ClassesDaily, ImagesDaily
from app.services.boards.repository import ContextFilter, context_condition
from app.services.database.queries import class_name_spellings, rollup_day_range
from app.services.spc.shifts import Shift, day_window, zone

SubgroupId = tuple[date, str | None]
"""A subgroup: its production day and shift (None: the whole day)."""


@dataclass(frozen=True)
class SubgroupFilter:
    """Which boards, grouped how: local production days `start`..`end` (inclusive) in the
    zone `timezone`, per shift when `shifts` is not empty."""

    start: date
    end: date
    timezone: str = "UTC"
    shifts: tuple[Shift, ...] = field(default_factory=tuple)
    model_version: str | None = None
    # Only inspections with this board context (None: every inspection).
    context: ContextFilter | None = None

    @property
    def uses_rollups(self) -> bool:
        """Whether the daily rollups answer it (UTC days, no shifts, no board context)."""
        return self.timezone == "UTC" and not self.shifts and self.context is None


def _time(t: time) -> Any:
    return literal(t, Time)


class SpcRepository:
    """Boards, defective boards and defects per subgroup."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @staticmethod
    def _board_conditions(f: SubgroupFilter) -> list[ColumnElement[bool]]:
        """WHERE conditions on `images` for the model version and the board context."""
        conditions: list[ColumnElement[bool]] = []
        if f.model_version:
            conditions.append(
                exists().where(
                    Inspection.img_unique_id == Image.img_unique_id,
                    Inspection.model_version == f.model_version,
                )
            )
        if f.context is not None:
            conditions.append(context_condition(Image.img_unique_id, f.context))
        return conditions

    @staticmethod
    def _buckets(f: SubgroupFilter) -> tuple[Any, Any, list[ColumnElement[bool]]]:
        """(production day, shift name, WHERE conditions) of `images` rows, in SQL."""
        local = func.timezone(f.timezone, Image.timestamp)
        local_day = cast(local, Date)
        first, _ = day_window(f.start, zone(f.timezone))
        # A shift over midnight of the last day ends on the next one.
        _, last = day_window(f.end + timedelta(days=1), zone(f.timezone))
        window = [Image.timestamp >= first, Image.timestamp < last]
        if not f.shifts:
            return local_day, literal(None), window
        t = cast(local, Time)
        names: list[tuple[ColumnElement[bool], Any]] = []
        days: list[tuple[ColumnElement[bool], Any]] = []
        for s in f.shifts:
            if s.crosses_midnight:
                names += [(t >= _time(s.start), s.name), (t < _time(s.end), s.name)]
                days += [(t < _time(s.end), local_day - 1)]
            else:
                names.append(((t >= _time(s.start)) & (t < _time(s.end)), s.name))
        shift = case(*names, else_=None)
        day = case(*days, else_=local_day) if days else local_day
        return day, shift, window

    async def board_counts(self, f: SubgroupFilter) -> dict[SubgroupId, tuple[int, int]]:
        """(boards, defective boards) per subgroup that has boards; a defective board has
        at least one region (the AOI's call, before any review).

        """
        conditions = self._board_conditions(f)
        if f.uses_rollups:
            images = func.sum(ImagesDaily.images)
            stmt = (
                select(ImagesDaily.day, images, func.sum(ImagesDaily.images_with_defects))
                .where(*rollup_day_range(ImagesDaily.day, f.start, f.end))
                .group_by(ImagesDaily.day)
                .having(images > 0)
            )
            if f.model_version:
                stmt = stmt.where(ImagesDaily.model_version == f.model_version)
            rows = await self.session.execute(stmt)
            return {(d, None): (int(n), int(bad)) for d, n, bad in rows.all()}
        day, shift, window = self._buckets(f)
        defective = exists().where(
            DefectClass.img_unique_id == Image.img_unique_id, DefectClass.total_regions > 0
        )
        inner = (
            select(day.label("day"), shift.label("shift"), defective.label("bad"))
            .where(*window, *conditions)
            .subquery()
        )
        grouped = (
            select(inner.c.day, inner.c.shift, func.count(), func.count().filter(inner.c.bad))
            .where(inner.c.day.between(f.start, f.end))
            .group_by(inner.c.day, inner.c.shift)
        )
        if f.shifts:
            grouped = grouped.where(inner.c.shift.is_not(None))
        result = await self.session.execute(grouped)
        return {(d, s): (int(n), int(bad)) for d, s, n, bad in result.all()}

    async def class_defects(self, f: SubgroupFilter, class_name: str) -> dict[SubgroupId, int]:
        """Regions of defect class `class_name` (any letter case) per subgroup that has any."""
        conditions = self._board_conditions(f)
        spellings = await class_name_spellings(self.session, class_name)
        if f.uses_rollups:
            stmt = (
                select(ClassesDaily.day, func.sum(ClassesDaily.regions))
                .where(
                    *rollup_day_range(ClassesDaily.day, f.start, f.end),
                    ClassesDaily.class_name.in_(spellings),
                )
                .group_by(ClassesDaily.day)
            )
            if f.model_version:
                stmt = stmt.where(ClassesDaily.model_version == f.model_version)
            rows = await self.session.execute(stmt)
            return {(d, None): int(n) for d, n in rows.all()}
        day, shift, window = self._buckets(f)
        inner = (
            select(day.label("day"), shift.label("shift"), DefectClass.total_regions)
            .join(DefectClass, DefectClass.img_unique_id == Image.img_unique_id)
            .where(*window, *conditions, DefectClass.class_name.in_(spellings))
            .subquery()
        )
        grouped = (
            select(inner.c.day, inner.c.shift, func.sum(inner.c.total_regions))
            .where(inner.c.day.between(f.start, f.end))
            .group_by(inner.c.day, inner.c.shift)
        )
        if f.shifts:
            grouped = grouped.where(inner.c.shift.is_not(None))
        result = await self.session.execute(grouped)
        return {(d, s): int(n) for d, s, n in result.all()}

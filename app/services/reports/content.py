"""What a shift or day report says: yield, Pareto, false-call rate, top boards and the
control charts, for one production day (SPC_TIMEZONE) or one shift of it (SHIFTS).

Boards and defective boards as in the SPC charts (docs/spc.md): a board is an inspection,
defective when it has at least one region. Yield = boards without a region / boards (the
AOI's first-pass yield, before review). False-call rate = regions of the period's boards
reviewed `false_call` / regions reviewed (docs/review.md); for a reviewer reading, the
boards they audit or may audit count as unreviewed (blind second review).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import AgentError
from app.models.database import DefectClass, Image, RegionVerdict
from app.models.spc import SpcChart
from app.services.review.blind import seen_by
from app.services.spc.service import ChartQuery, SpcService, check_day
from app.services.spc.shifts import day_window, shift_window

CHART_DAYS = 30
"""Production days shown on the report's control charts, the report's day the last."""
TOP_BOARDS = 10
"""Boards listed with the most regions."""


class UnknownShift(AgentError):
    """The shift asked for is not in SHIFTS."""

    status_code = 422
    error = "invalid_request"


@dataclass(frozen=True)
class ClassLine:
    """One class of the Pareto: regions, share of all regions, cumulative share (0..1)."""

    class_name: str
    regions: int
    share: float
    cumulative: float


@dataclass(frozen=True)
class Report:
    """Everything one report shows; `start`/`end` are the UTC instants [start, end)."""

    day: date
    shift: str | None
    timezone: str
    start: datetime
    end: datetime
    boards: int
    defective: int
    regions: int
    reviewed_regions: int
    false_calls: int
    pareto: list[ClassLine]
    top_boards: list[tuple[str, int]]
    p_chart: SpcChart
    u_chart: SpcChart | None

    @property
    def title(self) -> str:
        """`AOI report 2026-12-07` or `AOI report 2026-12-07 shift A`."""
        return f"AOI report {self.day.isoformat()}" + (f" shift {self.shift}" if self.shift else "")

    @property
    def yield_rate(self) -> float | None:
        """Boards without a region / boards; None without boards."""
        return (self.boards - self.defective) / self.boards if self.boards else None

    @property
    def false_call_rate(self) -> float | None:
        """False calls / reviewed regions; None when none was reviewed."""
        return self.false_calls / self.reviewed_regions if self.reviewed_regions else None


class ReportRepository:
    """The report's aggregates over the boards inspected in the UTC instants [start, end),
    as `viewer` (the reviewer reading; None: unknown) may see them."""

    def __init__(
        self, session: AsyncSession, start: datetime, end: datetime, viewer: str | None = None
    ) -> None:
        self.session = session
        self.viewer = viewer
        self.window = [Image.timestamp >= start, Image.timestamp < end]
        self.regions = func.sum(DefectClass.total_regions)

    async def board_totals(self) -> tuple[int, int]:
        """(boards, boards with at least one region)."""
        has_region = exists().where(
            DefectClass.img_unique_id == Image.img_unique_id, DefectClass.total_regions > 0
        )
        stmt = select(func.count(), func.count().filter(has_region)).where(*self.window)
        boards, defective = (await self.session.execute(stmt.select_from(Image))).one()
        return int(boards), int(defective)

    async def class_regions(self) -> list[tuple[str, int]]:
        """(class name, regions) per class with regions, most first."""
        stmt = (
            select(DefectClass.class_name, self.regions)
            .join(Image, Image.img_unique_id == DefectClass.img_unique_id)
            .where(*self.window)
            .group_by(DefectClass.class_name)
            .having(self.regions > 0)
            .order_by(self.regions.desc(), DefectClass.class_name)
        )
        return [(name, int(n)) for name, n in (await self.session.execute(stmt)).all()]

    async def top_boards(self, limit: int) -> list[tuple[str, int]]:
        """(img_unique_id, regions) of the `limit` boards with the most regions."""
        stmt = (
            select(DefectClass.img_unique_id, self.regions)
            .join(Image, Image.img_unique_id == DefectClass.img_unique_id)
            .where(*self.window)
            .group_by(DefectClass.img_unique_id)
            .having(self.regions > 0)
            .order_by(self.regions.desc(), DefectClass.img_unique_id)
            .limit(limit)
        )
        return [(img_id, int(n)) for img_id, n in (await self.session.execute(stmt)).all()]

    async def verdict_totals(self) -> tuple[int, int]:
        """(regions with a verdict, of them `false_call`), the verdicts of the boards whose
        first review is hidden from the viewer left out (app/services/review/blind.py)."""
        stmt = (
            select(func.count(), func.count().filter(RegionVerdict.verdict == "false_call"))
            .select_from(RegionVerdict)
            .join(Image, Image.img_unique_id == RegionVerdict.img_unique_id)
            .where(*self.window, *seen_by(RegionVerdict.img_unique_id, self.viewer))
        )
        reviewed, false_calls = (await self.session.execute(stmt)).one()
        return int(reviewed), int(false_calls)


async def build_report(
    session: AsyncSession,
    settings: Settings,
    day: date,
    shift: str | None,
    viewer: str | None = None,
) -> Report:
    """The report of production day `day` (in SPC_TIMEZONE), or of shift `shift` of it,
    as `viewer` (the reviewer reading) may see it: the boards they audit or may audit
    count as unreviewed in the false-call rate.

    Raises:
        UnknownShift: `shift` is not in SHIFTS.
        DayOutOfRange: `day` is before 1900 or after 9000.
    """
    check_day(day, "day")
    tz = settings.spc_zone
    if shift is None:
        start, end = day_window(day, tz)
    else:
        match = [s for s in settings.spc_shifts if s.name == shift]
        if not match:
            names = ", ".join(s.name for s in settings.spc_shifts) or "none (SHIFTS is empty)"
            raise UnknownShift(f"shift {shift!r} is not in SHIFTS; the shifts are: {names}")
        start, end = shift_window(day, match[0], tz)
    repository = ReportRepository(session, start, end, viewer)
    boards, defective = await repository.board_totals()
    classes = await repository.class_regions()
    total = sum(n for _, n in classes)
    pareto, running = [], 0
    for name, n in classes:
        running += n
        pareto.append(ClassLine(name, n, n / total, running / total))
    top = await repository.top_boards(TOP_BOARDS)
    reviewed, false_calls = await repository.verdict_totals()
    spc = SpcService(session, settings)
    query = ChartQuery(day - timedelta(days=CHART_DAYS - 1), day, "shift" if shift else "day", None)
    p_chart = await spc.p_chart(query)
    u_chart = await spc.u_chart(query, pareto[0].class_name) if pareto else None
    return Report(
        day=day,
        shift=shift,
        timezone=settings.spc_timezone,
        start=start,
        end=end,
        boards=boards,
        defective=defective,
        regions=total,
        reviewed_regions=reviewed,
        false_calls=false_calls,
        pareto=pareto,
        top_boards=top,
        p_chart=p_chart,
        u_chart=u_chart,
    )

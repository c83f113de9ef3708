"""Control charts of the inspections: subgroups from the database, maths from `charts`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import AgentError
from app.models.spc import SpcAlarm, SpcChart, SpcPoint
from app.services.boards.repository import ContextFilter
from app.services.history.dashboard import daily_range
from app.services.spc.charts import RULE_TEXT, Chart, Subgroup, p_chart, u_chart
from app.services.spc.repository import SpcRepository, SubgroupFilter, SubgroupId
from app.services.spc.shifts import subgroup_key


class ShiftsNotConfigured(AgentError):
    """Subgroups per shift were asked for, but SHIFTS is empty."""

    status_code = 422
    error = "invalid_request"


class DayOutOfRange(AgentError):
    """A day so far in the past or future that its local window cannot be computed."""

    status_code = 422
    error = "invalid_request"


FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(9000, 12, 31)


def check_day(day: date, name: str) -> date:
    """`day`, when it is within 1900-01-01..9000-12-31 (room for time zone arithmetic).

    Raises:
        DayOutOfRange: it is not.
    """
    if not FIRST_DAY <= day <= LAST_DAY:
        raise DayOutOfRange(f"{name} {day.isoformat()} is outside {FIRST_DAY}..{LAST_DAY}")
    return day


@dataclass(frozen=True)
class ChartQuery:
    """What a chart shows: production days (inclusive, SPC_TIMEZONE; defaults: the 30 days
    up to today), subgroups per day or shift, the baseline's length in subgroups (default
    SPC_BASELINE_SUBGROUPS), and filters."""

    start_date: date | None = None
    end_date: date | None = None
    subgroup: Literal["day", "shift"] = "day"
    baseline: int | None = None
    model_version: str | None = None
    # Only boards inspected with this board context (serial, product, line, side, lot).
    context: ContextFilter | None = None


class SpcService:
    """Builds p- and u-charts from the subgroup counts (`SpcRepository`)."""

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.repository = SpcRepository(session)
        self.settings = settings

    def _filter(self, query: ChartQuery) -> SubgroupFilter:
        if query.subgroup == "shift" and not self.settings.spc_shifts:
            raise ShiftsNotConfigured("subgroup=shift needs SHIFTS (e.g. A=06:00-14:00,...)")
        today = datetime.now(self.settings.spc_zone).date()
        end = check_day(query.end_date or today, "end_date")
        if query.start_date:
            check_day(query.start_date, "start_date")
        start, end, _ = daily_range(query.start_date, end)
        return SubgroupFilter(
            start=start,
            end=end,
            timezone=self.settings.spc_timezone,
            shifts=self.settings.spc_shifts if query.subgroup == "shift" else (),
            model_version=query.model_version,
            context=query.context,
        )

    def _order(self, ids: list[SubgroupId]) -> list[SubgroupId]:
        rank = {s.name: i for i, s in enumerate(self.settings.spc_shifts)}
        return sorted(ids, key=lambda k: (k[0], rank.get(k[1] or "", -1)))

    async def p_chart(self, query: ChartQuery) -> SpcChart:
        """The p-chart of defective boards per subgroup (see `charts.p_chart`); subgroups
        without boards are left out.

        Raises:
            BadDateRange: the start is after the end, or the range is over 731 days.
            DayOutOfRange: a day before 1900 or after 9000.
            ShiftsNotConfigured: per shift without SHIFTS.
        """
        f = self._filter(query)
        counts = await self.repository.board_counts(f)
        ids = self._order(list(counts))
        subgroups = [Subgroup(subgroup_key(*k), *counts[k]) for k in ids]
        chart = p_chart(
            subgroups,
            self._baseline(query, len(ids)),
            self.settings.spc_rule_set,
            self.settings.spc_cusum_h,
        )
        return self._answer(chart, query, f, ids, None)

    async def u_chart(self, query: ChartQuery, class_name: str) -> SpcChart:
        """The u-chart of `class_name` defects per board per subgroup (see
        `charts.u_chart`); subgroups without boards are left out.

        Raises:
            BadDateRange, ShiftsNotConfigured: as `p_chart`.
        """
        f = self._filter(query)
        boards = await self.repository.board_counts(f)
        defects = await self.repository.class_defects(f, class_name)
        ids = self._order(list(boards))
        subgroups = [Subgroup(subgroup_key(*k), boards[k][0], defects.get(k, 0)) for k in ids]
        # Rule 5 (the CUSUM) belongs to the p-chart; u_chart ignores it.
        chart = u_chart(subgroups, self._baseline(query, len(ids)), self.settings.spc_rule_set)
        return self._answer(chart, query, f, ids, class_name)

    def _baseline(self, query: ChartQuery, available: int) -> int:
        wanted = query.baseline or self.settings.spc_baseline_subgroups
        return max(1, min(wanted, available))

    def _answer(
        self,
        chart: Chart,
        query: ChartQuery,
        f: SubgroupFilter,
        ids: list[SubgroupId],
        class_name: str | None,
    ) -> SpcChart:
        kind = "p" if chart.kind == "p" else "u"
        points = [
            SpcPoint(
                key=p.key,
                day=day,
                shift=shift,
                boards=p.boards,
                count=p.count,
                value=p.value or 0.0,
                center=p.center,
                lcl=p.lcl,
                ucl=p.ucl,
                z=p.z,
                rules=[int(r) for r in p.rules],
            )
            for p, (day, shift) in zip(chart.points, ids, strict=True)
        ]
        alarms = [
            SpcAlarm(
                chart=kind,
                rule=int(e.rule),
                rule_text=RULE_TEXT[e.rule],
                side="above" if e.side > 0 else "below",
                class_name=class_name,
                product=f.context.product if f.context else None,
                line=f.context.line if f.context else None,
                first_key=chart.points[e.first].key,
                last_key=chart.points[e.last].key,
                open=e.open,
            )
            for e in chart.excursions
        ]
        return SpcChart(
            kind=kind,
            subgroup=query.subgroup,
            timezone=f.timezone,
            class_name=class_name,
            start_date=f.start,
            end_date=f.end,
            center=chart.center,
            baseline_subgroups=chart.baseline_subgroups if ids else 0,
            baseline_boards=chart.baseline_boards,
            limits_defined=chart.limits_defined,
            rules=sorted(int(r) for r in self.settings.spc_rule_set),
            points=points,
            alarms=alarms,
        )

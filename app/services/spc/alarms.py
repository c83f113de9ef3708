"""Recording SPC alarms: one `spc_alarms` row per excursion, raised once (docs/spc.md).

`AlarmChecker.run` (the periodic job on SPC_CHECK_CRON) draws the p-chart per day (and
per shift with SHIFTS) and the u-chart of every class with regions in the chart range,
and upserts their excursions: a new excursion inserts its row (the alarm is *raised*:
and the `spc.alarm` webhook event and, with CFX on, its CFX message go to the outbox in
the same transaction); a known one updates its last subgroup, and is *cleared* once the
chart's latest subgroup is no longer in it.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, literal_column, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.models.rollups import ClassesDaily
from app.models.spc import SpcAlarm, SpcAlarmRecorded, SpcChart
from app.models.spc_alarms import EXCURSION_KEY, SpcAlarmRecord
from app.services.cfx.outbox import CfxOutbox
from app.services.spc.charts import RULE_TEXT, Rule
from app.services.spc.service import ChartQuery, SpcService
from app.services.webhooks.events import WebhookEvents

logger = logging.getLogger(__name__)


class AlarmRepository:
    """The `spc_alarms` rows."""

    def __init__(
        self,
        session: AsyncSession,
        webhooks: WebhookEvents | None = None,
        cfx: CfxOutbox | None = None,
    ) -> None:
        self.session = session
        # Where a raised alarm is reported, in the transaction that records it.
        self.webhooks = webhooks
        self.cfx = cfx

    async def record(self, chart: SpcChart) -> list[SpcAlarm]:
        """Upsert the chart's excursions; returns those raised now (new rows), each also
        written to the outbox as an `spc.alarm` webhook event (and a CFX
        `LogEntryRecorded` with CFX on) when the repository was given them."""
        raised = []
        for a in chart.alarms:
            row = {
                "chart": a.chart,
                "subgroup": chart.subgroup,
                "rule": a.rule,
                "side": 1 if a.side == "above" else -1,
                "class_name": a.class_name or "",
                "product": a.product or "",
                "line": a.line or "",
                "first_key": a.first_key,
                "last_key": a.last_key,
            }
            new = insert(SpcAlarmRecord).values(**row)
            cleared = None if a.open else func.coalesce(SpcAlarmRecord.cleared_at, func.now())
            upsert: Any = new.on_conflict_do_update(
                index_elements=list(EXCURSION_KEY),
                set_={"last_key": new.excluded.last_key, "cleared_at": cleared},
            ).returning(literal_column("xmax = 0"))
            if (await self.session.execute(upsert)).scalar_one():
                raised.append(a)
                if self.webhooks is not None:
                    self.webhooks.spc_alarm(self.session, a, chart.subgroup)
                if self.cfx is not None:
                    self.cfx.spc_alarm(self.session, a, chart.subgroup)
        return raised

    async def class_names(self, query: ChartQuery) -> list[str]:
        """Class names with regions in the chart range (UTC days of the rollups)."""
        stmt = select(ClassesDaily.class_name).group_by(ClassesDaily.class_name)
        if query.start_date:
            stmt = stmt.where(ClassesDaily.day >= query.start_date)
        stmt = stmt.having(func.sum(ClassesDaily.regions) > 0)
        return sorted(str(n) for n in (await self.session.execute(stmt)).scalars())

    async def listing(self, open_only: bool, limit: int) -> list[SpcAlarmRecord]:
        """The latest alarms (open ones only with `open_only`), newest first."""
        stmt = select(SpcAlarmRecord).order_by(SpcAlarmRecord.raised_at.desc()).limit(limit)
        if open_only:
            stmt = stmt.where(SpcAlarmRecord.cleared_at.is_(None))
        return list((await self.session.execute(stmt)).scalars())


def recorded(row: SpcAlarmRecord) -> SpcAlarmRecorded:
    """The answer model of a `spc_alarms` row."""
    return SpcAlarmRecorded(
        id=row.id,
        chart="p" if row.chart == "p" else "u",
        subgroup="shift" if row.subgroup == "shift" else "day",
        rule=row.rule,
        rule_text=RULE_TEXT[Rule(row.rule)],
        side="above" if row.side > 0 else "below",
        class_name=row.class_name or None,
        product=row.product or None,
        line=row.line or None,
        first_key=row.first_key,
        last_key=row.last_key,
        open=row.cleared_at is None,
        raised_at=row.raised_at,
        cleared_at=row.cleared_at,
    )


class AlarmChecker:
    """Draws the charts and records their excursions, in its own session."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.webhooks = WebhookEvents()
        self.cfx = CfxOutbox(settings)

    async def run(self, query: ChartQuery | None = None) -> list[SpcAlarm]:
        """Check the charts of `query` (default: the last 30 days per day, and per shift
        with SHIFTS); returns the alarms raised now, each logged as a warning."""
        base = query or ChartQuery()
        subgroups = ["day", "shift"] if self.settings.spc_shifts else ["day"]
        raised: list[SpcAlarm] = []
        async with self.sessions() as session:
            service = SpcService(session, self.settings)
            alarms = AlarmRepository(session, self.webhooks, self.cfx)
            classes = await alarms.class_names(base)
            for subgroup in subgroups:
                q = ChartQuery(
                    base.start_date, base.end_date, "shift" if subgroup == "shift" else "day"
                )
                raised += await alarms.record(await service.p_chart(q))
                for name in classes:
                    raised += await alarms.record(await service.u_chart(q, name))
            await session.commit()
        for a in raised:
            logger.warning(
                "SPC alarm: %s-chart %s rule %d (%s), %s, from %s",
                a.chart,
                a.class_name or "",
                a.rule,
                a.rule_text,
                a.side,
                a.first_key,
            )
        return raised

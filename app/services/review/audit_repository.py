"""Queries of the reviewer figures and the double-review sample.

Speed reads `review_events` of the range through `ix_review_events_created_at_reviewer`;
the audit queue reads `review_audits` (a sample: a few per cent of the reviewed boards) by
`ix_review_audits_queued_at`, and verdicts by image through their img_unique_id indexes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, extract, func, literal, literal_column, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.database import AuditVerdict, Region, RegionVerdict, ReviewAudit, ReviewEvent
from app.services.history.dashboard import utc_day
from app.services.review.blind import blind_condition, seen_by

SpeedRow = tuple[str, Any, int, int, float | None, float | None, float | None]
"""(reviewer, UTC day or None, verdicts, timed verdicts, median s, p90 s, summed s)."""


class AuditRepository:
    """Reviewer speed, audit queue and second verdicts over one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def speed(
        self, start: datetime, end: datetime, idle_gap_s: float, per_day: bool
    ) -> list[SpeedRow]:
        """Per reviewer (and per UTC day of the verdict with `per_day`) over verdicts given
        in [start, end): verdicts, timed verdicts, median and 90th percentile of their
        seconds (PostgreSQL `percentile_cont`, linear interpolation) and summed seconds.

        A verdict's seconds are the time since the reviewer's previous review event (any
        kind, looked for up to `idle_gap_s` before `start`); over `idle_gap_s`, untimed."""
        gap = ReviewEvent.created_at - func.lag(ReviewEvent.created_at).over(
            partition_by=ReviewEvent.reviewer, order_by=(ReviewEvent.created_at, ReviewEvent.id)
        )
        events = (
            select(
                ReviewEvent.reviewer,
                ReviewEvent.created_at,
                ReviewEvent.kind,
                ReviewEvent.value,
                extract("epoch", gap).label("seconds"),
            )
            .where(
                ReviewEvent.created_at >= start - timedelta(seconds=idle_gap_s),
                ReviewEvent.created_at < end,
            )
            .subquery()
        )
        timed = func.nullif(
            func.least(events.c.seconds, idle_gap_s + 1), idle_gap_s + 1
        )  # NULL over the idle gap (or for a first event)
        seconds: Any = literal_column("timed_seconds")
        keys: list[Any] = [events.c.reviewer]
        if per_day:
            keys.append(utc_day(events.c.created_at).label("day"))
        verdicts = (
            select(*keys, timed.label("timed_seconds"))
            .where(
                events.c.kind == "verdict",
                events.c.value.is_not(None),
                events.c.created_at >= start,
            )
            .subquery()
        )
        group: list[Any] = [verdicts.c.reviewer]
        if per_day:
            group.append(verdicts.c.day)
        stmt = (
            select(
                *group,
                func.count(),
                func.count(seconds),
                func.percentile_cont(0.5).within_group(seconds),
                func.percentile_cont(0.9).within_group(seconds),
                func.sum(seconds),
            )
            .select_from(verdicts)
            .group_by(*group)
            .order_by(*group)
        )
        rows: list[SpeedRow] = []
        for row in (await self.session.execute(stmt)).all():
            name, *rest = row
            day = rest.pop(0) if per_day else None
            n, timed_n, median, p90, total = rest
            rows.append(
                (name, day, int(n), int(timed_n), _float(median), _float(p90), _float(total))
            )
        return rows

    # -- the sample --------------------------------------------------------------------

    async def queue(self, img_unique_id: str) -> None:
        """Queues a board for a second review (nothing when it already is)."""
        stmt = pg_insert(ReviewAudit).values(img_unique_id=img_unique_id)
        await self.session.execute(stmt.on_conflict_do_nothing())

    async def is_queued(self, img_unique_id: str) -> bool:
        """Whether the board is in the double-review sample."""
        stmt = select(exists().where(ReviewAudit.img_unique_id == img_unique_id))
        return bool((await self.session.execute(stmt)).scalar())

    async def first_reviewed_by(self, img_unique_id: str, reviewer: str) -> bool:
        """Whether `reviewer` gave one of the board's first verdicts."""
        stmt = select(
            exists().where(
                RegionVerdict.img_unique_id == img_unique_id, RegionVerdict.reviewer == reviewer
            )
        )
        return bool((await self.session.execute(stmt)).scalar())

    async def other_auditor(self, img_unique_id: str, reviewer: str) -> str | None:
        """Another reviewer who already gave second verdicts on the board, if any."""
        stmt = (
            select(AuditVerdict.reviewer)
            .where(AuditVerdict.img_unique_id == img_unique_id, AuditVerdict.reviewer != reviewer)
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def blind_to(self, img_unique_id: str, reviewer: str) -> bool:
        """Whether the board's first review must stay hidden from `reviewer`: the board is
        in the double-review sample, `reviewer` gave none of its first verdicts, and nobody
        else audits it (so `reviewer` audits it, or may still be its auditor)."""
        stmt = select(blind_condition(literal(img_unique_id), reviewer))
        return bool((await self.session.execute(stmt)).scalar())

    async def blind_among(self, img_unique_ids: Iterable[str], reviewer: str) -> set[str]:
        """Of these boards, those whose first review is hidden from `reviewer` (as in
        `blind_to`): one query over their `review_audits` rows."""
        ids = list(img_unique_ids)
        if not ids:
            return set()
        stmt = select(ReviewAudit.img_unique_id).where(
            ReviewAudit.img_unique_id.in_(ids),
            blind_condition(ReviewAudit.img_unique_id, reviewer),
        )
        return set((await self.session.execute(stmt)).scalars())

    def _open_to(self, reviewer: str) -> list[Any]:
        """Conditions on ReviewAudit: a region still lacks a second verdict, `reviewer`
        gave no first verdict on the board and nobody else audits it."""
        return [
            exists().where(
                Region.img_unique_id == ReviewAudit.img_unique_id,
                ~exists().where(AuditVerdict.region_unique_id == Region.region_unique_id),
            ),
            ~exists().where(
                RegionVerdict.img_unique_id == ReviewAudit.img_unique_id,
                RegionVerdict.reviewer == reviewer,
            ),
            ~exists().where(
                AuditVerdict.img_unique_id == ReviewAudit.img_unique_id,
                AuditVerdict.reviewer != reviewer,
            ),
        ]

    async def next_audit(self, reviewer: str, after: str | None) -> tuple[str | None, int]:
        """(the oldest queued board open to `reviewer` other than `after`, or None; how
        many are open to them)."""
        conditions = self._open_to(reviewer)
        count = select(func.count()).select_from(ReviewAudit).where(*conditions)
        pending = int((await self.session.execute(count)).scalar_one())
        stmt = select(ReviewAudit.img_unique_id).where(*conditions)
        if after is not None:
            stmt = stmt.where(ReviewAudit.img_unique_id != after)
        stmt = stmt.order_by(ReviewAudit.queued_at, ReviewAudit.img_unique_id).limit(1)
        return (await self.session.execute(stmt)).scalar_one_or_none(), pending

    async def board(self, img_unique_id: str) -> list[tuple[int, str | None, str | None]]:
        """The board's regions in the model's order with their second verdict and its
        reason (None: none)."""
        stmt = (
            select(Region.region_unique_id, AuditVerdict.verdict, AuditVerdict.reason)
            .outerjoin(AuditVerdict, AuditVerdict.region_unique_id == Region.region_unique_id)
            .where(Region.img_unique_id == img_unique_id)
            .order_by(Region.region_unique_id)
        )
        return [(int(r), v, why) for r, v, why in (await self.session.execute(stmt)).all()]

    async def put(
        self,
        region_unique_id: int,
        img_unique_id: str,
        verdict: str,
        reviewer: str,
        reason: str | None = None,
    ) -> None:
        """Sets (inserts or replaces) the second verdict of a region, stamped now."""
        values = {"verdict": verdict, "reviewer": reviewer, "reason": reason}
        stmt = (
            pg_insert(AuditVerdict)
            .values(region_unique_id=region_unique_id, img_unique_id=img_unique_id, **values)
            .on_conflict_do_update(
                index_elements=[AuditVerdict.region_unique_id],
                set_={**values, "reviewed_at": func.now()},
            )
        )
        await self.session.execute(stmt)

    async def remove(self, region_unique_id: int) -> None:
        """Withdraws the second verdict of a region."""
        await self.session.execute(
            delete(AuditVerdict).where(AuditVerdict.region_unique_id == region_unique_id)
        )

    # -- agreement ---------------------------------------------------------------------

    async def verdict_pairs(
        self, start: datetime, end: datetime, viewer: str | None = None
    ) -> list[tuple[str, str, str, str, int]]:
        """Over boards queued in [start, end) whose first review `viewer` may see (all
        when None): (first reviewer, second reviewer, first verdict, second verdict,
        regions), for regions with both verdicts."""
        stmt = (
            select(
                RegionVerdict.reviewer,
                AuditVerdict.reviewer,
                RegionVerdict.verdict,
                AuditVerdict.verdict,
                func.count(),
            )
            .select_from(ReviewAudit)
            .join(AuditVerdict, AuditVerdict.img_unique_id == ReviewAudit.img_unique_id)
            .join(RegionVerdict, RegionVerdict.region_unique_id == AuditVerdict.region_unique_id)
            .where(
                ReviewAudit.queued_at >= start,
                ReviewAudit.queued_at < end,
                *seen_by(ReviewAudit.img_unique_id, viewer),
            )
            .group_by(
                RegionVerdict.reviewer,
                AuditVerdict.reviewer,
                RegionVerdict.verdict,
                AuditVerdict.verdict,
            )
        )
        return [(a, b, x, y, int(n)) for a, b, x, y, n in (await self.session.execute(stmt)).all()]

    async def audit_counts(self, start: datetime, end: datetime) -> tuple[int, int]:
        """(boards queued in [start, end), of them those whose every region has a second
        verdict)."""
        done = ~exists().where(
            Region.img_unique_id == ReviewAudit.img_unique_id,
            ~exists().where(AuditVerdict.region_unique_id == Region.region_unique_id),
        )
        stmt = select(func.count(), func.count().filter(done)).where(
            and_(ReviewAudit.queued_at >= start, ReviewAudit.queued_at < end)
        )
        queued, finished = (await self.session.execute(stmt)).one()
        return int(queued), int(finished)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)

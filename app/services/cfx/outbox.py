"""The transactional outbox: rows written in the transaction of the change they report,
and the queries of the publisher that drains them (docs/cfx.md).

Ordering: the publisher sends one sink's rows in `id` order (the order their
transactions inserted them), one at a time, and does not pass a row it could not send,
so the messages of one board (`ordering_key`) reach the broker in the order they were
written. At least once: a row is marked published only after the broker settled it; a
crash in between sends it again, with the same `UniqueID`.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.models.database import BoardContext, DefectClass, OutboxMessage, Region
from app.models.spc import SpcAlarm
from app.services.cfx import messages
from app.services.security.signing import LinkSigner, load_secret

CFX_SINK = "cfx"
# The session-level advisory lock of the CFX publisher (one publisher per deployment).
CFX_PUBLISHER_LOCK = (0x414F53, 2)  # "AOS", 2 (1 is the orphan-file sweep)
ORDERING_KEY_LENGTH = 128


@dataclass(frozen=True)
class Backlog:
    """Unpublished rows of a sink: how many, and the age of the oldest (seconds, None
    when there are none)."""

    messages: int
    oldest_age_s: float | None


class OutboxRepository:
    """Queries of the `outbox` table over one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, sink: str, ordering_key: str, payload: dict[str, Any]) -> None:
        """Add a message (a CFX envelope) to the session's transaction."""
        self.session.add(
            OutboxMessage(
                sink=sink,
                ordering_key=ordering_key[:ORDERING_KEY_LENGTH],
                message_name=payload["MessageName"],
                unique_id=uuid.UUID(payload["UniqueID"]),
                payload=payload,
            )
        )

    async def pending(self, sink: str, limit: int) -> Sequence[OutboxMessage]:
        """The oldest unpublished rows of `sink`, in `id` order."""
        stmt = (
            select(OutboxMessage)
            .where(OutboxMessage.sink == sink, OutboxMessage.published_at.is_(None))
            .order_by(OutboxMessage.id)
            .limit(limit)
        )
        return (await self.session.scalars(stmt)).all()

    async def mark_published(self, ids: Sequence[int]) -> None:
        """Record that the broker settled these rows."""
        if ids:
            await self.session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(ids))
                .values(published_at=func.now(), attempts=OutboxMessage.attempts + 1)
            )

    async def mark_failed(self, row_id: int, error: str, retry_in_s: float) -> None:
        """Record a failed attempt on the row the publisher is blocked on."""
        await self.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == row_id)
            .values(
                attempts=OutboxMessage.attempts + 1,
                last_error=error[:2000],
                next_attempt_at=func.now() + timedelta(seconds=retry_in_s),
            )
        )

    async def backlog(self, sink: str) -> Backlog:
        """Unpublished rows of `sink` and the age of the oldest (database clock)."""
        stmt = select(
            func.count(OutboxMessage.id),
            func.extract("epoch", func.now() - func.min(OutboxMessage.created_at)),
        ).where(OutboxMessage.sink == sink, OutboxMessage.published_at.is_(None))
        count, age = (await self.session.execute(stmt)).one()
        return Backlog(int(count), float(age) if age is not None else None)

    async def prune(self, sink: str, older_than_hours: float) -> int:
        """Delete rows of `sink` published more than `older_than_hours` ago; how many."""
        result = await self.session.execute(
            delete(OutboxMessage).where(
                OutboxMessage.sink == sink,
                OutboxMessage.published_at < func.now() - timedelta(hours=older_than_hours),
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def try_lock(self) -> bool:
        """Take the publisher's lock if no other connection holds it; whether it was."""
        stmt = select(func.pg_try_advisory_lock(*CFX_PUBLISHER_LOCK))
        return bool((await self.session.execute(stmt)).scalar())

    async def unlock(self) -> None:
        """Release the lock taken by `try_lock` on this connection."""
        await self.session.execute(select(func.pg_advisory_unlock(*CFX_PUBLISHER_LOCK)))

    async def defects(self, img_unique_id: str) -> list[messages.CfxDefect]:
        """The stored regions of an inspection, in class then region order."""
        stmt = (
            select(Region, DefectClass.class_name)
            .join(DefectClass, Region.class_unique_id == DefectClass.class_unique_id)
            .where(Region.img_unique_id == img_unique_id)
            .order_by(DefectClass.class_name, Region.region_id)
        )
        return [_cfx_defect(region, name) for region, name in (await self.session.execute(stmt))]

    async def defect(self, region_unique_id: int) -> messages.CfxDefect | None:
        """One stored region, or None."""
        stmt = (
            select(Region, DefectClass.class_name)
            .join(DefectClass, Region.class_unique_id == DefectClass.class_unique_id)
            .where(Region.region_unique_id == region_unique_id)
        )
        row = (await self.session.execute(stmt)).first()
        return _cfx_defect(row[0], row[1]) if row is not None else None


def _cfx_defect(region: Region, class_name: str) -> messages.CfxDefect:
    return messages.CfxDefect(
        region_unique_id=region.region_unique_id,
        class_name=class_name,
        x=region.bbox_x,
        y=region.bbox_y,
        width=region.bbox_width,
        height=region.bbox_height,
        area_pixels=region.area_pixels,
    )


def unit_identifier(img_unique_id: str, board_serial: str | None = None) -> str:
    """The CFX `UnitIdentifier` and the outbox's ordering key of an inspection: the
    board's serial when known, else the inspection's img_unique_id."""
    return board_serial or img_unique_id


def production_of(context: BoardContext | None) -> messages.CfxProduction:
    """The CFX production fields of an inspection's board context (none without one)."""
    if context is None:
        return messages.NO_PRODUCTION
    return messages.CfxProduction(
        recipe_name=context.product,
        recipe_revision=context.recipe_revision,
        side=context.side,
        work_order=context.lot,
        panel_position=context.panel_position,
        panel_id=context.panel_id,
        lane=context.lane,
    )


async def unit_of(session: AsyncSession, img_unique_id: str) -> tuple[str, messages.CfxProduction]:
    """`unit_identifier` of a stored inspection — the `board_serial` its upload sent
    (`inspection_contexts`, docs/boards.md), else its img_unique_id — and its production
    fields (product, revision, side, lot, panel id and position, lane). One primary-key
    read."""
    context = await session.get(BoardContext, img_unique_id)
    unit = unit_identifier(img_unique_id, context.board_serial if context else None)
    return unit, production_of(context)


class CfxOutbox:
    """Writes CFX messages into the outbox inside the caller's transaction; does nothing
    when CFX_BROKER_URL is unset (so the table does not grow with no one to drain it).

    Every method only adds rows to the given session: they commit, or roll back, with
    the change they report.
    """

    def __init__(self, settings: Settings, signer: LinkSigner | None = None) -> None:
        self.settings = settings
        self.enabled = bool(settings.cfx_broker_url)
        # Seconds spent adding each of the last inspections' messages (the benchmark).
        self.build_seconds: deque[float] = deque(maxlen=10_000)
        self.signer = signer
        if self.enabled and signer is None:
            secret = load_secret(settings.secret_key, settings.resolved_data_dir)
            self.signer = LinkSigner(secret, settings.download_link_ttl_s)

    def overlay_url(self, img_unique_id: str) -> str | None:
        """An absolute, signed link to the inspection's overlay image (valid for
        DOWNLOAD_LINK_TTL_S seconds), on PUBLIC_BASE_URL or else HOST:PORT."""
        if self.signer is None:
            return None
        base = self.settings.public_base_url or f"http://{self.settings.host}:{self.settings.port}"
        path = self.signer.sign(f"/download/image/{img_unique_id}/overlay")
        return base.rstrip("/") + path

    def add(self, session: AsyncSession, key: str, name: str, body: dict[str, Any]) -> None:
        """Add one message `name` with `body` for board `key` to the session."""
        if self.enabled:
            OutboxRepository(session).add(
                CFX_SINK, key, messages.new_envelope(name, body, self.settings.cfx_handle)
            )

    async def inspection_finished(
        self,
        session: AsyncSession,
        img_unique_id: str,
        accepted_at: datetime | None,
        *,
        test_procedure: str | None = None,
        error: str | None = None,
    ) -> None:
        """`WorkStarted`, `UnitsInspected` and `WorkCompleted` (one TransactionID) for a
        stored inspection (its regions already flushed in `session`), or for a failed one
        (`error`: `OverallResult` Error, `WorkCompleted.Result` Failed).

        `test_procedure` names the model (`<model name> <model version>`)."""
        if not self.enabled:
            return
        started = time.perf_counter()
        unit, production = await unit_of(session, img_unique_id)
        transaction = uuid.uuid4()
        stored = error is None
        defects = await OutboxRepository(session).defects(img_unique_id) if stored else []
        self.add(
            session,
            unit,
            messages.WORK_STARTED,
            messages.work_started(transaction, unit, production),
        )
        self.add(
            session,
            unit,
            messages.UNITS_INSPECTED,
            messages.units_inspected(
                transaction_id=transaction,
                unit_identifier=unit,
                inspection_id=img_unique_id,
                defects=defects,
                overlay_url=self.overlay_url(img_unique_id) if stored else None,
                started_at=accepted_at,
                ended_at=datetime.now().astimezone(),
                test_procedure=test_procedure,
                failed_error=error,
                production=production,
            ),
        )
        self.add(
            session,
            unit,
            messages.WORK_COMPLETED,
            messages.work_completed(
                transaction,
                unit,
                "Completed" if stored else "Failed",
                production,
                "Pass" if stored and not defects else "Fail",
            ),
        )
        self.build_seconds.append(time.perf_counter() - started)

    async def verdict(
        self,
        session: AsyncSession,
        img_unique_id: str,
        region_unique_id: int,
        verdict: str | None,
        reviewer: str,
        comment: str | None,
    ) -> None:
        """`UnitsInspected` (InspectionMethod Human) with the region's verification
        outcome: DefectConfirmed (real), DefectRejected (false call), NotVerifiedYet
        (unsure, or the verdict withdrawn)."""
        if not self.enabled:
            return
        defect = await OutboxRepository(session).defect(region_unique_id)
        if defect is None:
            return
        outcome = messages.VERDICT_VERIFICATION.get(verdict or "", "NotVerifiedYet")
        unit, production = await unit_of(session, img_unique_id)
        self._verification(
            session,
            unit,
            production,
            img_unique_id,
            reviewer,
            [(defect, outcome)],
            "NotVerifiedYet",
            comment,
        )

    async def disposition(
        self,
        session: AsyncSession,
        img_unique_id: str,
        disposition: str | None,
        reviewer: str,
        comment: str | None,
    ) -> None:
        """`UnitsInspected` (InspectionMethod Human) with the board's verification outcome
        — `pass`: DefectRejected (its calls were false), `repair`/`scrap`:
        DefectConfirmed, withdrawn: NotVerifiedYet — and for `scrap` also
        `UnitsDisqualified` (the standard's message for a unit taken out of production)."""
        if not self.enabled:
            return
        outcome = {
            "pass": "DefectRejected",
            "repair": "DefectConfirmed",
            "scrap": "DefectConfirmed",
        }
        unit_outcome = outcome.get(disposition or "", "NotVerifiedYet")
        unit, production = await unit_of(session, img_unique_id)
        self._verification(
            session, unit, production, img_unique_id, reviewer, [], unit_outcome, comment
        )
        if disposition == "scrap":
            self.add(
                session,
                unit,
                messages.UNITS_DISQUALIFIED,
                messages.units_disqualified(unit, comment, production),
            )

    def spc_alarm(self, session: AsyncSession, alarm: SpcAlarm, subgroup: str) -> None:
        """`CFX.ResourcePerformance.LogEntryRecorded` (Importance `Warning`) for a raised
        SPC alarm: `InformationId` `SPC.<p|u>.rule<N>`, `Message` naming the chart,
        subgroup, rule, side, class, product and line."""
        if not self.enabled:
            return
        scope = ", ".join(
            f"{name} {value}"
            for name, value in (
                ("class", alarm.class_name),
                ("product", alarm.product),
                ("line", alarm.line),
            )
            if value
        )
        text = (
            f"SPC alarm: {alarm.chart}-chart per {subgroup}, rule {alarm.rule}"
            f" ({alarm.rule_text}), {alarm.side} the centre line, from {alarm.first_key}"
            + (f"; {scope}" if scope else "")
        )
        self.add(
            session,
            f"spc:{alarm.chart}:{alarm.class_name or ''}",
            messages.LOG_ENTRY_RECORDED,
            messages.log_entry_recorded(f"SPC.{alarm.chart}.rule{alarm.rule}", text, "Warning"),
        )

    def _verification(
        self,
        session: AsyncSession,
        unit: str,
        production: messages.CfxProduction,
        img_unique_id: str,
        reviewer: str,
        defects: list[tuple[messages.CfxDefect, str]],
        unit_verification: str,
        comment: str | None,
    ) -> None:
        body = messages.verification_inspected(
            unit_identifier=unit,
            inspection_id=img_unique_id,
            reviewer=reviewer,
            defects=defects,
            unit_verification=unit_verification,
            overlay_url=self.overlay_url(img_unique_id) if defects else None,
            comment=comment,
            production=production,
        )
        self.add(session, unit, messages.UNITS_INSPECTED, body)

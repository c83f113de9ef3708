"""Webhook events, written to the outbox (sink `webhooks`) inside the transaction of the
change they report, so an event exists if and only if its change committed.

Every event is one outbox row whatever the number of endpoints: the dispatcher
(`app/services/webhooks/dispatcher.py`) fans it out to one delivery per subscribed,
enabled endpoint. The row's `unique_id` is the event's stable id: the `webhook-id` header
of every attempt at every endpoint. The payload is the Standard Webhooks shape
`{"type": ..., "timestamp": ISO 8601, "data": {...}}` (docs/webhooks.md lists `data`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.database import Batch, BoardContext, Inspection, InspectionStatus, OutboxMessage
from app.models.spc import SpcAlarm
from app.services.cfx.outbox import ORDERING_KEY_LENGTH, OutboxRepository, unit_identifier

WEBHOOKS_SINK = "webhooks"

INSPECTION_COMPLETED = "inspection.completed"
INSPECTION_FAILED = "inspection.failed"
BATCH_COMPLETED = "batch.completed"
REGION_VERDICT = "region.verdict"
IMAGE_DISPOSITION = "image.disposition"
SPC_ALARM = "spc.alarm"
EVENT_TYPES = (
    INSPECTION_COMPLETED,
    INSPECTION_FAILED,
    BATCH_COMPLETED,
    REGION_VERDICT,
    IMAGE_DISPOSITION,
    SPC_ALARM,
)
"""Every event type an endpoint can subscribe to."""


def envelope(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """The Standard Webhooks payload of an event happening now (UTC)."""
    return {"type": event_type, "timestamp": datetime.now(UTC).isoformat(), "data": data}


def add_event(session: AsyncSession, event_type: str, key: str, data: dict[str, Any]) -> None:
    """Add event `event_type` about `key` (the board, or the batch / chart) to the
    session's transaction, as one `webhooks` outbox row with a new stable id."""
    session.add(
        OutboxMessage(
            sink=WEBHOOKS_SINK,
            ordering_key=key[:ORDERING_KEY_LENGTH],
            message_name=event_type,
            unique_id=uuid.uuid4(),
            payload=envelope(event_type, data),
        )
    )


async def _board(session: AsyncSession, img_unique_id: str) -> tuple[str | None, str]:
    """The board serial of an inspection (None when its upload sent none) and its unit
    identifier (the serial, else the img_unique_id): one primary-key read."""
    context = await session.get(BoardContext, img_unique_id)
    serial = context.board_serial if context else None
    return serial, unit_identifier(img_unique_id, serial)


class WebhookEvents:
    """Writes the webhook events of inspections, batches and reviews into the caller's
    session (they commit, or roll back, with the change they report)."""

    async def inspection_completed(
        self,
        session: AsyncSession,
        img_unique_id: str,
        *,
        batch_id: str | None,
        defect_classes: dict[str, int],
        model_name: str | None,
        model_version: str | None,
    ) -> None:
        """`inspection.completed` for a stored inspection; with a batch, also
        `batch.completed` when it was the batch's last unfinished image."""
        serial, unit = await _board(session, img_unique_id)
        total = sum(defect_classes.values())
        add_event(
            session,
            INSPECTION_COMPLETED,
            unit,
            {
                "img_unique_id": img_unique_id,
                "board_serial": serial,
                "batch_id": batch_id,
                "outcome": "fail" if total else "pass",
                "total_defects": total,
                "defect_classes": dict(sorted(defect_classes.items())),
                "model_name": model_name,
                "model_version": model_version,
                "links": {
                    "regions": f"/api/images/{img_unique_id}/regions",
                    "overlay": f"/download/image/{img_unique_id}/overlay",
                },
            },
        )
        if batch_id is not None:
            await self.batch_progress(session, batch_id)

    async def inspection_failed(
        self, session: AsyncSession, img_unique_id: str, error: str
    ) -> None:
        """`inspection.failed` (the error as ledgered); with a batch, also
        `batch.completed` when it was the batch's last unfinished image."""
        serial, unit = await _board(session, img_unique_id)
        batch_id = await session.scalar(
            select(Inspection.batch_id).where(Inspection.img_unique_id == img_unique_id)
        )
        add_event(
            session,
            INSPECTION_FAILED,
            unit,
            {
                "img_unique_id": img_unique_id,
                "board_serial": serial,
                "batch_id": batch_id,
                "error": error[:2000],
            },
        )
        if batch_id is not None:
            await self.batch_progress(session, batch_id)

    async def batch_progress(self, session: AsyncSession, batch_id: str) -> None:
        """`batch.completed` when no image of the batch is pending or processing any more.

        The batch row is locked (`FOR UPDATE`) first, so of two images finishing at once
        the second waits for the first's commit and then counts it finished: exactly one
        of them sees the batch complete. A batch retried later completes (and reports)
        again."""
        locked = await session.scalar(
            select(Batch.batch_id).where(Batch.batch_id == batch_id).with_for_update()
        )
        if locked is None:
            return
        stmt = (
            select(Inspection.status, func.count())
            .where(Inspection.batch_id == batch_id)
            .group_by(Inspection.status)
        )
        counts = {str(status): int(n) for status, n in (await session.execute(stmt)).all()}
        if counts.get(InspectionStatus.PENDING, 0) or counts.get(InspectionStatus.PROCESSING, 0):
            return
        add_event(
            session,
            BATCH_COMPLETED,
            batch_id,
            {
                "batch_id": batch_id,
                "total_images": sum(counts.values()),
                "succeeded": counts.get(InspectionStatus.SUCCEEDED, 0),
                "failed": counts.get(InspectionStatus.FAILED, 0),
                "links": {"batch": f"/api/batches/{batch_id}"},
            },
        )

    async def region_verdict(
        self,
        session: AsyncSession,
        img_unique_id: str,
        region_unique_id: int,
        verdict: str | None,
        reviewer: str,
        comment: str | None,
    ) -> None:
        """`region.verdict`: a verdict set (`real`, `false_call`, `unsure`) or withdrawn
        (null) on a region."""
        defect = await OutboxRepository(session).defect(region_unique_id)
        serial, unit = await _board(session, img_unique_id)
        add_event(
            session,
            REGION_VERDICT,
            unit,
            {
                "img_unique_id": img_unique_id,
                "board_serial": serial,
                "region_unique_id": region_unique_id,
                "class_name": defect.class_name if defect else None,
                "verdict": verdict,
                "reviewer": reviewer,
                "comment": comment,
            },
        )

    async def image_disposition(
        self,
        session: AsyncSession,
        img_unique_id: str,
        disposition: str | None,
        reviewer: str,
        comment: str | None,
    ) -> None:
        """`image.disposition`: a board's disposition (`pass`, `repair`, `scrap`) set or
        withdrawn (null)."""
        serial, unit = await _board(session, img_unique_id)
        add_event(
            session,
            IMAGE_DISPOSITION,
            unit,
            {
                "img_unique_id": img_unique_id,
                "board_serial": serial,
                "disposition": disposition,
                "reviewer": reviewer,
                "comment": comment,
            },
        )

    def spc_alarm(self, session: AsyncSession, alarm: SpcAlarm, subgroup: str) -> None:
        """`spc.alarm`: a control-chart excursion raised (once per excursion)."""
        add_event(
            session,
            SPC_ALARM,
            f"spc:{alarm.chart}:{alarm.class_name or ''}",
            {
                "chart": alarm.chart,
                "subgroup": subgroup,
                "rule": alarm.rule,
                "rule_text": alarm.rule_text,
                "side": alarm.side,
                "class_name": alarm.class_name,
                "product": alarm.product,
                "line": alarm.line,
                "first_key": alarm.first_key,
                "last_key": alarm.last_key,
            },
        )

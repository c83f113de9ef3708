"""Queries of the webhook tables (`webhook_endpoints`, `webhook_deliveries`,
`webhook_attempts`) and of the `webhooks` outbox rows they are fanned out from."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.database import OutboxMessage
from app.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.services.webhooks.events import WEBHOOKS_SINK

# The session-level advisory lock of the webhook dispatcher (one per deployment).
WEBHOOK_DISPATCHER_LOCK = (0x414F53, 3)  # "AOS", 3 (2 is the CFX publisher)


@dataclass(frozen=True)
class WebhookBacklog:
    """Events not yet delivered: pending deliveries plus events not yet fanned out, and
    the age of the oldest (seconds; None when there are none)."""

    pending: int
    oldest_age_s: float | None


def body_of(payload: dict[str, object]) -> str:
    """The exact JSON text that is signed and sent (compact, UTF-8, keys as written)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)


class WebhookRepository:
    """The webhook tables over one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- endpoints --------------------------------------------------------------------

    async def add_endpoint(self, endpoint: WebhookEndpoint) -> WebhookEndpoint:
        """Insert an endpoint; returns it with its id and created_at."""
        self.session.add(endpoint)
        await self.session.flush()
        await self.session.refresh(endpoint)
        return endpoint

    async def endpoints(self) -> Sequence[WebhookEndpoint]:
        """Every endpoint, in id order."""
        return (
            await self.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id))
        ).all()

    async def any_enabled(self) -> bool:
        """Whether some endpoint is enabled."""
        stmt = select(WebhookEndpoint.id).where(WebhookEndpoint.enabled).limit(1)
        return (await self.session.scalar(stmt)) is not None

    async def endpoint(
        self, endpoint_id: int, *, for_update: bool = False
    ) -> WebhookEndpoint | None:
        """One endpoint, or None; `for_update` locks its row until the transaction ends."""
        return await self.session.get(
            WebhookEndpoint, endpoint_id, with_for_update=for_update or None
        )

    async def remove_endpoint(self, endpoint: WebhookEndpoint) -> None:
        """Delete an endpoint with its deliveries and their attempts (cascade)."""
        await self.session.delete(endpoint)
        await self.session.flush()

    async def delivery_counts(self) -> dict[int, dict[str, int]]:
        """Per endpoint id, deliveries by status."""
        stmt = select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count()).group_by(
            WebhookDelivery.endpoint_id, WebhookDelivery.status
        )
        counts: dict[int, dict[str, int]] = {}
        for endpoint_id, status, n in (await self.session.execute(stmt)).all():
            counts.setdefault(int(endpoint_id), {})[str(status)] = int(n)
        return counts

    # -- deliveries -------------------------------------------------------------------

    async def deliveries(self, endpoint_id: int, limit: int) -> Sequence[WebhookDelivery]:
        """The newest deliveries of an endpoint, newest first."""
        stmt = (
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.id.desc())
            .limit(limit)
        )
        return (await self.session.scalars(stmt)).all()

    async def attempts_of(self, delivery_ids: Sequence[int]) -> dict[int, list[WebhookAttempt]]:
        """The attempts of these deliveries, oldest first, by delivery id."""
        found: dict[int, list[WebhookAttempt]] = {i: [] for i in delivery_ids}
        if delivery_ids:
            stmt = (
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id.in_(delivery_ids))
                .order_by(WebhookAttempt.id)
            )
            for attempt in (await self.session.scalars(stmt)).all():
                found[attempt.delivery_id].append(attempt)
        return found

    async def delivery(
        self, delivery_id: int, *, for_update: bool = False
    ) -> WebhookDelivery | None:
        """One delivery, or None."""
        stmt = select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.scalars(stmt)).first()

    async def redeliver(self, delivery: WebhookDelivery, retry_hours: float) -> None:
        """Make a delivery `pending` again, due now, with a fresh retry window."""
        now = func.now()
        await self.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery.id)
            .values(
                status="pending",
                next_attempt_at=now,
                retry_until=now + timedelta(hours=retry_hours),
            )
        )
        await self.session.refresh(delivery)

    # -- the dispatcher -----------------------------------------------------------------

    async def fan_out(self, limit: int, retry_hours: float) -> int:
        """Turn up to `limit` unpublished `webhooks` outbox rows (in id order) into one
        pending delivery per enabled endpoint subscribed to the event's type, and mark
        the rows published; returns how many rows were taken. A row already fanned out
        (a crash before the commit) adds no second delivery (unique endpoint + event)."""
        rows = (
            await self.session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.sink == WEBHOOKS_SINK, OutboxMessage.published_at.is_(None))
                .order_by(OutboxMessage.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        if not rows:
            return 0
        endpoints = (
            await self.session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.enabled))
        ).all()
        values = [
            {
                "endpoint_id": endpoint.id,
                "event_id": row.unique_id,
                "event_type": row.message_name,
                "body": body_of(row.payload),
                "retry_until": func.now() + timedelta(hours=retry_hours),
            }
            for row in rows
            for endpoint in endpoints
            if row.message_name in endpoint.events
        ]
        if values:
            await self.session.execute(
                insert(WebhookDelivery).values(values).on_conflict_do_nothing()
            )
        await self.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_([row.id for row in rows]))
            .values(published_at=func.now(), attempts=OutboxMessage.attempts + 1)
        )
        return len(rows)

    async def due_endpoints(self) -> list[int]:
        """Endpoints whose oldest pending delivery is due now (each endpoint's deliveries
        go out in id order, so a later one never overtakes an earlier one)."""
        head = (
            select(
                WebhookDelivery.endpoint_id,
                func.min(WebhookDelivery.id).label("head"),
            )
            .where(WebhookDelivery.status == "pending")
            .group_by(WebhookDelivery.endpoint_id)
            .subquery()
        )
        stmt = (
            select(head.c.endpoint_id)
            .join(WebhookDelivery, WebhookDelivery.id == head.c.head)
            .where(WebhookDelivery.next_attempt_at <= func.now())
        )
        return [int(i) for i in (await self.session.scalars(stmt)).all()]

    async def head(self, endpoint_id: int) -> tuple[WebhookDelivery, WebhookEndpoint] | None:
        """The oldest pending delivery of an endpoint when it is due, with its endpoint."""
        stmt = (
            select(
                WebhookDelivery,
                WebhookEndpoint,
                (WebhookDelivery.next_attempt_at <= func.now()).label("due"),
            )
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending")
            .order_by(WebhookDelivery.id)
            .limit(1)
            .execution_options(populate_existing=True)
        )
        row = (await self.session.execute(stmt)).first()
        if row is None or not row.due:
            return None
        return row[0], row[1]

    async def now(self) -> datetime:
        """The database's clock."""
        return (await self.session.execute(select(func.now()))).scalar_one()

    async def record_attempt(
        self,
        delivery: WebhookDelivery,
        attempt: WebhookAttempt,
        *,
        delivered: bool,
        retry_in_s: float,
    ) -> str:
        """Record an attempt and the delivery's new state: `delivered`, else `parked`
        when its retry window has run out, else `pending` again in `retry_in_s` seconds.
        Returns the new status."""
        self.session.add(attempt)
        now = await self.now()
        if delivered:
            status = "delivered"
        elif now + timedelta(seconds=retry_in_s) > delivery.retry_until:
            # The next try would fall outside the window: this was the last one.
            status = "parked"
        else:
            status = "pending"
        await self.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery.id)
            .values(
                status=status,
                attempts=WebhookDelivery.attempts + 1,
                last_status_code=attempt.status_code,
                last_error=attempt.error,
                last_response=attempt.response_excerpt,
                delivered_at=now if delivered else WebhookDelivery.delivered_at,
                next_attempt_at=now + timedelta(seconds=retry_in_s) if status == "pending" else now,
            )
        )
        return status

    async def backlog(self) -> WebhookBacklog:
        """Pending deliveries plus events not yet fanned out, and the oldest's age
        (database clock, seconds)."""
        deliveries = select(
            func.count(WebhookDelivery.id), func.min(WebhookDelivery.created_at)
        ).where(WebhookDelivery.status == "pending")
        events = select(func.count(OutboxMessage.id), func.min(OutboxMessage.created_at)).where(
            OutboxMessage.sink == WEBHOOKS_SINK, OutboxMessage.published_at.is_(None)
        )
        pending_n, pending_oldest = (await self.session.execute(deliveries)).one()
        events_n, events_oldest = (await self.session.execute(events)).one()
        oldest = min((t for t in (pending_oldest, events_oldest) if t is not None), default=None)
        age = None
        if oldest is not None:
            age = max(0.0, (await self.now() - oldest).total_seconds())
        return WebhookBacklog(int(pending_n) + int(events_n), age)

    async def prune(self, keep_days: float, keep_events_hours: float) -> int:
        """Delete delivered and parked deliveries older than `keep_days` (their attempts
        by cascade) and fanned-out outbox rows older than `keep_events_hours`; how many
        deliveries went."""
        result = await self.session.execute(
            delete(WebhookDelivery).where(
                WebhookDelivery.status != "pending",
                WebhookDelivery.created_at < func.now() - timedelta(days=keep_days),
            )
        )
        await self.session.execute(
            delete(OutboxMessage).where(
                OutboxMessage.sink == WEBHOOKS_SINK,
                OutboxMessage.published_at < func.now() - timedelta(hours=keep_events_hours),
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def try_lock(self) -> bool:
        """Take the dispatcher's lock if no other connection holds it; whether it was."""
        stmt = select(func.pg_try_advisory_lock(*WEBHOOK_DISPATCHER_LOCK))
        return bool((await self.session.execute(stmt)).scalar())

    async def unlock(self) -> None:
        """Release the lock taken by `try_lock` on this connection."""
        await self.session.execute(select(func.pg_advisory_unlock(*WEBHOOK_DISPATCHER_LOCK)))

"""Webhook endpoints, deliveries and delivery attempts (migration 20261207_0022,
docs/webhooks.md)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.database import Base

URL_LENGTH = 2000
DESCRIPTION_LENGTH = 500


class WebhookEndpoint(Base):
    """A receiver an admin registered: its URL, the event types it subscribes to, its
    signing secret (`whsec_` + base64, Standard Webhooks) and whether it is enabled.

    After a rotation (migration 20261208_0030), `previous_secret` is the replaced secret
    and `previous_secret_until` the end of the overlap (WEBHOOK_SECRET_OVERLAP_S) during
    which deliveries are signed with it too."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(URL_LENGTH))
    events: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(128))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=true())
    description: Mapped[str | None] = mapped_column(String(DESCRIPTION_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_secret_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def signing_secrets(self, at: datetime) -> list[str]:
        """The secrets a delivery attempted at `at` is signed with: the current one, and
        the previous one while its overlap lasts (`at` before `previous_secret_until`)."""
        previous, until = self.previous_secret, self.previous_secret_until
        if previous is not None and until is not None and at < until:
            return [self.secret, previous]
        return [self.secret]


class WebhookDelivery(Base):
    """One event for one endpoint: the exact body signed and sent, and its delivery state
    (`pending` → `delivered`, or `parked` once WEBHOOK_RETRY_HOURS ran out)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'parked')", name="status"),
        UniqueConstraint("endpoint_id", "event_id"),
        Index(
            "ix_webhook_deliveries_pending",
            "endpoint_id",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    # The event's stable id (the outbox row's `unique_id`): the `webhook-id` header.
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event_type: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    retry_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_response: Mapped[str | None] = mapped_column(Text)


class WebhookAttempt(Base):
    """One try at a delivery: when, how long (seconds), the HTTP status (null when none
    came back), the error, and the first bytes of the answer."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    duration_s: Mapped[float] = mapped_column(Double)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(Text)

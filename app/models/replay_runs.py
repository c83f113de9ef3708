"""Replay runs and their items (migration 20261207_0025, docs/replay.md): which stored
inputs a replay re-runs through which model service, and where each one stands."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.database import IMG_UNIQUE_ID_LENGTH, Base

REPLAY_ITEM_STATUSES = ("pending", "running", "done", "failed")


class ReplayRun(Base):
    """One replay: the model service (URL without credentials), what was selected
    (`selection`: batch_id, start_date, end_date, product), how many stored inputs it
    holds, when it was created and last resumed, and when every item was done or failed."""

    __tablename__ = "replay_runs"

    run_id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    model_service_url: Mapped[str] = mapped_column(Text)
    selection: Mapped[dict[str, Any]] = mapped_column(JSON)
    total_items: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    resumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ReplayItem(Base):
    """One stored input of a replay, unique per (run, image): `pending`, `running` (claimed
    by a runner holding `claim_token`), `done` (its `answer_id` committed in the same
    transaction as the answer) or `failed` (`error`)."""

    __tablename__ = "replay_items"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'running', 'done', 'failed')", name="status"),
        Index(
            "ix_replay_items_pending",
            "run_id",
            "img_unique_id",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    run_id: Mapped[int] = mapped_column(
        ForeignKey("replay_runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    img_unique_id: Mapped[str] = mapped_column(
        String(IMG_UNIQUE_ID_LENGTH),
        ForeignKey("images.img_unique_id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    )
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    claim_token: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    answer_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_answers.answer_id", ondelete="SET NULL")
    )
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

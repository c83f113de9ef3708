"""The transactional outbox: messages to external systems (IPC-CFX now, webhooks later).

Each row is written in the same transaction as the state change it reports (an
inspection stored, a verdict, a disposition), so a message exists if and only if its
change committed. A publisher drains the rows of one `sink` in `id` order (so in order
per `ordering_key`, the board), at least once; `unique_id` is the message's stable id
(the CFX envelope's `UniqueID`) so a consumer can drop repeats. See docs/cfx.md.

Revision ID: 20261207_0019
Revises: 20261207_0018
Create Date: 2026-12-07 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261207_0019"
down_revision: str | None = "20261207_0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("sink", sa.String(length=32), nullable=False),
        sa.Column("ordering_key", sa.String(length=128), nullable=False),
        sa.Column("message_name", sa.String(length=128), nullable=False),
        sa.Column("unique_id", sa.Uuid(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("unique_id", name=op.f("uq_outbox_unique_id")),
    )
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["sink", "id"],
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_index("ix_outbox_ordering_key", "outbox", ["ordering_key", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_ordering_key", table_name="outbox")
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.drop_table("outbox")

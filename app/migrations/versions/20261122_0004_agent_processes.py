"""Agent processes with a heartbeat; inspection owner and automatic-retry times.

`agent_processes` has one row per running agent or worker process, refreshed
every few seconds (`last_seen`). An inspection being processed names its owner
(`inspections.owner_process_id`), so the recovery sweep fails only work whose
process has stopped beating, never a live upload that is merely slow.
No foreign key: an owner whose row is gone counts as stopped, and a process whose
row was removed while it stalled can go on writing its inspections.
`next_attempt_at` / `waiting_since` record a batch image waiting for the model
service to come back (automatic retries within BATCH_RETRY_WINDOW_S).

Revision ID: 20261122_0004
Revises: 20261122_0003
Create Date: 2026-11-22 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261122_0004"
down_revision: str | None = "20261122_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_processes",
        sa.Column("process_id", sa.String(length=32), nullable=False),
        sa.Column("hostname", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "last_seen", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("process_id", name=op.f("pk_agent_processes")),
    )
    op.add_column("inspections", sa.Column("owner_process_id", sa.String(length=32), nullable=True))
    op.add_column(
        "inspections",
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "inspections",
        sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        op.f("ix_inspections_owner_process_id"), "inspections", ["owner_process_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_inspections_owner_process_id"), table_name="inspections")
    op.drop_column("inspections", "waiting_since")
    op.drop_column("inspections", "next_attempt_at")
    op.drop_column("inspections", "owner_process_id")
    op.drop_table("agent_processes")

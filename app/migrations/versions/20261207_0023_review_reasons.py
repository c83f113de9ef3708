"""Reason codes of review verdicts (docs/review.md).

`review_reasons`: the admin's list of reason codes (PUT /api/review/reasons); while it
has rows they replace REVIEW_REASONS. `reason` on `region_verdicts`, `review_events` and
`audit_verdicts`: the code a `real` or `false_call` verdict was given with (null: none).

Revision ID: 20261207_0023
Revises: 20261207_0025
Create Date: 2026-12-07 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261207_0023"
down_revision: str | None = "20261207_0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("region_verdicts", "review_events", "audit_verdicts")


def upgrade() -> None:
    op.create_table(
        "review_reasons",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("set_by", sa.String(length=64), nullable=True),
        sa.Column(
            "set_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_review_reasons")),
    )
    for table in TABLES:
        op.add_column(table, sa.Column("reason", sa.String(length=32), nullable=True))


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_column(table, "reason")
    op.drop_table("review_reasons")

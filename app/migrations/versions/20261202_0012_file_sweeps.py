"""The orphan-file sweep's record: one sweep per interval for the whole deployment.

`file_sweeps` has one row (`name` = `orphan_files`): when the last sweep started, the
cut-off up to which it checked the store (`horizon`), and when the last full listing
started. The process that holds the sweep's advisory lock reads and writes it, so only
one process lists the store per interval, and later sweeps list only the day folders
that can hold new orphans (see app/services/inspection/orphans.py).

Revision ID: 20261202_0012
Revises: 20261202_0011
Create Date: 2026-12-02 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261202_0012"
down_revision: str | None = "20261202_0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "file_sweeps",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("horizon", sa.DateTime(timezone=True), nullable=True),
        sa.Column("full_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_file_sweeps")),
    )


def downgrade() -> None:
    op.drop_table("file_sweeps")

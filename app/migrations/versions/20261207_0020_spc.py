"""SPC alarms: one row per excursion of a control chart (docs/spc.md).

An excursion is a run of consecutive subgroups one Western Electric rule flags on one
side of the centre line; its row is written when the alarm check first sees it
(`raised_at`), follows its last flagged subgroup, and gets `cleared_at` when a later
subgroup is no longer flagged. The unique key makes the check idempotent: an excursion
raises once, however often the check runs and on however many agents.

Revision ID: 20261207_0020
Revises: 20261207_0019
Create Date: 2026-12-07 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261207_0020"
down_revision: str | None = "20261207_0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "spc_alarms",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("chart", sa.String(length=1), nullable=False),
        sa.Column("subgroup", sa.String(length=8), nullable=False),
        sa.Column("rule", sa.SmallInteger(), nullable=False),
        sa.Column("side", sa.SmallInteger(), nullable=False),
        sa.Column("class_name", sa.String(length=128), nullable=False),
        sa.Column("product", sa.String(length=128), nullable=False),
        sa.Column("line", sa.String(length=128), nullable=False),
        sa.Column("first_key", sa.String(length=32), nullable=False),
        sa.Column("last_key", sa.String(length=32), nullable=False),
        sa.Column(
            "raised_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spc_alarms")),
        sa.UniqueConstraint(
            "chart",
            "subgroup",
            "rule",
            "side",
            "class_name",
            "product",
            "line",
            "first_key",
            name=op.f("uq_spc_alarms_excursion"),
        ),
    )
    op.create_index(
        "ix_spc_alarms_open", "spc_alarms", ["raised_at"], postgresql_where="cleared_at IS NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_spc_alarms_open", table_name="spc_alarms")
    op.drop_table("spc_alarms")

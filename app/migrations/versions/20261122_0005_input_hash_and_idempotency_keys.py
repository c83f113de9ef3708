"""Input SHA-256 and repeat_of on the ledger; the idempotency_keys table.

`inspections.input_sha256` (indexed) finds earlier inspections of the same bytes;
rows accepted before this migration keep a null hash. `repeat_of` names the first
earlier inspection of the same bytes. `idempotency_keys` keeps the first answer
to a request sent with an `Idempotency-Key` header for 24 hours.

Revision ID: 20261122_0005
Revises: 20261122_0004
Create Date: 2026-11-22 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261122_0005"
down_revision: str | None = "20261122_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("inspections", sa.Column("input_sha256", sa.String(length=64), nullable=True))
    op.add_column("inspections", sa.Column("repeat_of", sa.String(length=22), nullable=True))
    op.create_index(
        op.f("ix_inspections_input_sha256"), "inspections", ["input_sha256"], unique=False
    )
    op.create_foreign_key(
        op.f("fk_inspections_repeat_of_inspections"),
        "inspections",
        "inspections",
        ["repeat_of"],
        ["img_unique_id"],
        ondelete="SET NULL",
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        op.f("ix_idempotency_keys_expires_at"), "idempotency_keys", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_idempotency_keys_expires_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_constraint(
        op.f("fk_inspections_repeat_of_inspections"), "inspections", type_="foreignkey"
    )
    op.drop_index(op.f("ix_inspections_input_sha256"), table_name="inspections")
    op.drop_column("inspections", "repeat_of")
    op.drop_column("inspections", "input_sha256")

"""Board context of inspections: `inspection_contexts`.

One optional row per ledger row (`inspections`), deleted with it: the board serial,
panel, product, recipe revision, line, station, side and lot sent with the upload.
Indexed on board_serial (the board timeline), product, line and lot (filters). The
PRD's `images`, `classes` and `regions` keep their exact columns.

Revision ID: 20261207_0018
Revises: 20261207_0016
Create Date: 2026-12-07 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261207_0018"
down_revision: str | None = "20261207_0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TEXT_LENGTH = 64


def upgrade() -> None:
    op.create_table(
        "inspection_contexts",
        sa.Column("img_unique_id", sa.String(length=22), nullable=False),
        sa.Column("board_serial", sa.String(length=TEXT_LENGTH), nullable=True),
        sa.Column("panel_id", sa.String(length=TEXT_LENGTH), nullable=True),
        sa.Column("panel_position", sa.Integer(), nullable=True),
        sa.Column("product", sa.String(length=TEXT_LENGTH), nullable=True),
        sa.Column("recipe_revision", sa.String(length=TEXT_LENGTH), nullable=True),
        sa.Column("line", sa.String(length=TEXT_LENGTH), nullable=True),
        sa.Column("station", sa.String(length=TEXT_LENGTH), nullable=True),
        sa.Column("side", sa.String(length=8), nullable=True),
        sa.Column("lot", sa.String(length=TEXT_LENGTH), nullable=True),
        sa.CheckConstraint("side IN ('top', 'bottom')", name=op.f("ck_inspection_contexts_side")),
        sa.ForeignKeyConstraint(
            ["img_unique_id"],
            ["inspections.img_unique_id"],
            name=op.f("fk_inspection_contexts_img_unique_id_inspections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("img_unique_id", name=op.f("pk_inspection_contexts")),
    )
    for column in ("board_serial", "product", "line", "lot"):
        op.create_index(op.f(f"ix_inspection_contexts_{column}"), "inspection_contexts", [column])


def downgrade() -> None:
    op.drop_table("inspection_contexts")

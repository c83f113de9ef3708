"""The golden-board library and each inspection's registration against it.

`golden_boards`: one row per golden image (API-added ones are kept in the storage under
`golden/`, GOLDEN_DIR ones stay in their folder), with nullable `product` and `side` for
the line's board context. `golden_registrations`: per stored inspection, the golden board
found for it and its offset and score, computed once (see docs/golden.md).

The PRD's `images`/`classes`/`regions` keep their columns.

Revision ID: 20261207_0015
Revises: 20261207_0014
Create Date: 2026-12-07 18:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261207_0015"
down_revision: str | None = "20261207_0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "golden_boards",
        sa.Column("golden_id", sa.String(length=128), nullable=False),
        sa.Column("product", sa.String(length=128), nullable=True),
        sa.Column("side", sa.String(length=32), nullable=True),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("image_path", sa.Text(), nullable=False),
        sa.Column("media_type", sa.String(length=32), nullable=False),
        sa.Column("image_width", sa.Integer(), nullable=False),
        sa.Column("image_height", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("source IN ('api', 'folder')", name=op.f("ck_golden_boards_source")),
        sa.PrimaryKeyConstraint("golden_id", name=op.f("pk_golden_boards")),
    )
    op.create_index(op.f("ix_golden_boards_product"), "golden_boards", ["product"])
    op.create_index(op.f("ix_golden_boards_file_name"), "golden_boards", ["file_name"])
    op.create_index(
        "ix_golden_boards_image_height_image_width",
        "golden_boards",
        ["image_height", "image_width"],
    )
    op.create_table(
        "golden_registrations",
        sa.Column("img_unique_id", sa.String(length=22), nullable=False),
        sa.Column("golden_id", sa.String(length=128), nullable=True),
        sa.Column("dx", sa.Double(), nullable=True),
        sa.Column("dy", sa.Double(), nullable=True),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column(
            "registered_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.CheckConstraint(
            "method IN ('model', 'agent', 'none')", name=op.f("ck_golden_registrations_method")
        ),
        sa.ForeignKeyConstraint(
            ["img_unique_id"],
            ["images.img_unique_id"],
            name=op.f("fk_golden_registrations_img_unique_id_images"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["golden_id"],
            ["golden_boards.golden_id"],
            name=op.f("fk_golden_registrations_golden_id_golden_boards"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("img_unique_id", name=op.f("pk_golden_registrations")),
    )
    op.create_index(
        op.f("ix_golden_registrations_golden_id"), "golden_registrations", ["golden_id"]
    )


def downgrade() -> None:
    op.drop_table("golden_registrations")
    op.drop_table("golden_boards")

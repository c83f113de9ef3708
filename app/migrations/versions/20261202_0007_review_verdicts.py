"""Review results: the current verdict per region, disposition per image, and their
append-only history.

`region_verdicts` (one row per reviewed region: `real`, `false_call` or `unsure`),
`image_dispositions` (one row per dispositioned board: `pass`, `repair` or `scrap`), both
with reviewer, comment and time, and `review_events` (every change, who and when, with
the value before). Rows go with their image (ON DELETE CASCADE). The PRD's
`images`/`classes`/`regions` tables are unchanged.

Revision ID: 20261202_0007
Revises: 20261122_0006
Create Date: 2026-12-02 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261202_0007"
down_revision: str | None = "20261122_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now() -> sa.Column[object]:
    return sa.Column(
        "reviewed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "region_verdicts",
        sa.Column("region_unique_id", sa.BigInteger(), nullable=False),
        sa.Column("img_unique_id", sa.String(length=22), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reviewer", sa.String(length=64), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        _now(),
        sa.CheckConstraint(
            "verdict IN ('real', 'false_call', 'unsure')", name=op.f("ck_region_verdicts_verdict")
        ),
        sa.ForeignKeyConstraint(
            ["img_unique_id"],
            ["images.img_unique_id"],
            name=op.f("fk_region_verdicts_img_unique_id_images"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["region_unique_id"],
            ["regions.region_unique_id"],
            name=op.f("fk_region_verdicts_region_unique_id_regions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("region_unique_id", name=op.f("pk_region_verdicts")),
    )
    op.create_index(op.f("ix_region_verdicts_img_unique_id"), "region_verdicts", ["img_unique_id"])
    op.create_index(op.f("ix_region_verdicts_reviewed_at"), "region_verdicts", ["reviewed_at"])
    op.create_table(
        "image_dispositions",
        sa.Column("img_unique_id", sa.String(length=22), nullable=False),
        sa.Column("disposition", sa.String(length=16), nullable=False),
        sa.Column("reviewer", sa.String(length=64), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        _now(),
        sa.CheckConstraint(
            "disposition IN ('pass', 'repair', 'scrap')",
            name=op.f("ck_image_dispositions_disposition"),
        ),
        sa.ForeignKeyConstraint(
            ["img_unique_id"],
            ["images.img_unique_id"],
            name=op.f("fk_image_dispositions_img_unique_id_images"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("img_unique_id", name=op.f("pk_image_dispositions")),
    )
    op.create_index(
        op.f("ix_image_dispositions_reviewed_at"), "image_dispositions", ["reviewed_at"]
    )
    op.create_table(
        "review_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("img_unique_id", sa.String(length=22), nullable=False),
        sa.Column("region_unique_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=16), nullable=True),
        sa.Column("previous", sa.String(length=16), nullable=True),
        sa.Column("reviewer", sa.String(length=64), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('verdict', 'disposition')", name=op.f("ck_review_events_kind")
        ),
        sa.ForeignKeyConstraint(
            ["img_unique_id"],
            ["images.img_unique_id"],
            name=op.f("fk_review_events_img_unique_id_images"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_events")),
    )
    op.create_index("ix_review_events_img_unique_id_id", "review_events", ["img_unique_id", "id"])


def downgrade() -> None:
    op.drop_table("review_events")
    op.drop_table("image_dispositions")
    op.drop_table("region_verdicts")

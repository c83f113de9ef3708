"""The double-review sample (REVIEW_AUDIT_RATE) and the index of the reviewer figures.

`review_audits`: one row per board sampled for a second, blind review once its first
review was complete (every region had a verdict). `audit_verdicts`: the second reviewer's
verdict per region, kept apart from `region_verdicts` so a second verdict never replaces
the first. `ix_review_events_created_at_reviewer`: the reviewer figures read the verdict
events of a date range (seconds per verdict, verdicts per hour) through it.

Revision ID: 20261207_0021
Revises: 20261207_0020
Create Date: 2026-12-07 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261207_0021"
down_revision: str | None = "20261207_0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "review_audits",
        sa.Column("img_unique_id", sa.String(length=22), nullable=False),
        sa.Column(
            "queued_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["img_unique_id"],
            ["images.img_unique_id"],
            name=op.f("fk_review_audits_img_unique_id_images"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("img_unique_id", name=op.f("pk_review_audits")),
    )
    op.create_index(op.f("ix_review_audits_queued_at"), "review_audits", ["queued_at"])
    op.create_table(
        "audit_verdicts",
        sa.Column("region_unique_id", sa.BigInteger(), nullable=False),
        sa.Column("img_unique_id", sa.String(length=22), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reviewer", sa.String(length=64), nullable=False),
        sa.Column(
            "reviewed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "verdict IN ('real', 'false_call', 'unsure')", name=op.f("ck_audit_verdicts_verdict")
        ),
        sa.ForeignKeyConstraint(
            ["region_unique_id"],
            ["regions.region_unique_id"],
            name=op.f("fk_audit_verdicts_region_unique_id_regions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["img_unique_id"],
            ["review_audits.img_unique_id"],
            name=op.f("fk_audit_verdicts_img_unique_id_review_audits"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("region_unique_id", name=op.f("pk_audit_verdicts")),
    )
    op.create_index(op.f("ix_audit_verdicts_img_unique_id"), "audit_verdicts", ["img_unique_id"])
    op.create_index(
        "ix_review_events_created_at_reviewer", "review_events", ["created_at", "reviewer"]
    )


def downgrade() -> None:
    op.drop_index("ix_review_events_created_at_reviewer", table_name="review_events")
    op.drop_index(op.f("ix_audit_verdicts_img_unique_id"), table_name="audit_verdicts")
    op.drop_table("audit_verdicts")
    op.drop_index(op.f("ix_review_audits_queued_at"), table_name="review_audits")
    op.drop_table("review_audits")

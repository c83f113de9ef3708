"""Answers of model services other than the primary one (shadow runs and replays).

`model_answers`: one row per (image, model service) answer, with the model name and
version the service reported, its status, its analysis JSON and the keys of its PNGs
(under the store's `answers/` prefix). `answer_regions`: the answer's regions and the
primary region each matches (docs/models.md). The PRD's tables are untouched.

Revision ID: 20261207_0024
Revises: 20261207_0022
Create Date: 2026-12-07 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261207_0024"
down_revision: str | None = "20261207_0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_answers",
        sa.Column("answer_id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("img_unique_id", sa.String(length=22), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("model_service_url", sa.Text(), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=True),
        sa.Column("model_version", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("model_service_seconds", sa.Double(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("analysis", sa.JSON(), nullable=True),
        sa.Column("mask_path", sa.Text(), nullable=True),
        sa.Column("overlay_path", sa.Text(), nullable=True),
        sa.Column("combined_path", sa.Text(), nullable=True),
        sa.Column("region_count", sa.Integer(), nullable=True),
        sa.Column("matched_count", sa.Integer(), nullable=True),
        sa.Column("primary_region_count", sa.Integer(), nullable=True),
        sa.CheckConstraint("role IN ('shadow', 'replay')", name=op.f("ck_model_answers_role")),
        sa.CheckConstraint(
            "status IN ('succeeded', 'failed')", name=op.f("ck_model_answers_status")
        ),
        sa.ForeignKeyConstraint(
            ["img_unique_id"],
            ["images.img_unique_id"],
            name=op.f("fk_model_answers_img_unique_id_images"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("answer_id", name=op.f("pk_model_answers")),
    )
    op.create_index(op.f("ix_model_answers_img_unique_id"), "model_answers", ["img_unique_id"])
    op.create_index(
        "ix_model_answers_model_version_img_unique_id",
        "model_answers",
        ["model_version", "img_unique_id"],
    )
    op.create_table(
        "answer_regions",
        sa.Column("answer_region_id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("answer_id", sa.BigInteger(), nullable=False),
        sa.Column("region_id", sa.Integer(), nullable=False),
        sa.Column("class_name", sa.String(length=128), nullable=False),
        sa.Column("bbox_x", sa.Integer(), nullable=False),
        sa.Column("bbox_y", sa.Integer(), nullable=False),
        sa.Column("bbox_width", sa.Integer(), nullable=False),
        sa.Column("bbox_height", sa.Integer(), nullable=False),
        sa.Column("area_pixels", sa.BigInteger(), nullable=False),
        sa.Column("centroid_x", sa.Double(), nullable=False),
        sa.Column("centroid_y", sa.Double(), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=True),
        sa.Column("matched_region_unique_id", sa.BigInteger(), nullable=True),
        sa.Column("match_iou", sa.Double(), nullable=True),
        sa.Column("verdict", sa.String(length=16), nullable=True),
        sa.Column("reviewer", sa.String(length=64), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "verdict IN ('real', 'false_call', 'unsure')", name=op.f("ck_answer_regions_verdict")
        ),
        sa.ForeignKeyConstraint(
            ["answer_id"],
            ["model_answers.answer_id"],
            name=op.f("fk_answer_regions_answer_id_model_answers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["matched_region_unique_id"],
            ["regions.region_unique_id"],
            name=op.f("fk_answer_regions_matched_region_unique_id_regions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("answer_region_id", name=op.f("pk_answer_regions")),
    )
    op.create_index(op.f("ix_answer_regions_answer_id"), "answer_regions", ["answer_id"])
    op.create_index(
        op.f("ix_answer_regions_matched_region_unique_id"),
        "answer_regions",
        ["matched_region_unique_id"],
    )


def downgrade() -> None:
    op.drop_table("answer_regions")
    op.drop_table("model_answers")

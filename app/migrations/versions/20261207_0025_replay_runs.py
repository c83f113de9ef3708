"""Replays of stored inputs through another model service (docs/replay.md).

`replay_runs`: one row per replay (model service URL without credentials, selection,
item count). `replay_items`: one row per (run, image), unique, with its status
(`pending`, `running`, `done`, `failed`), the runner's claim token and the `answer_id`
committed in the same transaction as the answer, so a killed replay resumes without
asking twice for the same image.

Revision ID: 20261207_0025
Revises: 20261207_0024
Create Date: 2026-12-07 21:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261207_0025"
down_revision: str | None = "20261207_0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "replay_runs",
        sa.Column("run_id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("model_service_url", sa.Text(), nullable=False),
        sa.Column("selection", sa.JSON(), nullable=False),
        sa.Column("total_items", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("resumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_replay_runs")),
    )
    op.create_table(
        "replay_items",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("img_unique_id", sa.String(length=22), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("answer_id", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'done', 'failed')",
            name=op.f("ck_replay_items_status"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["replay_runs.run_id"],
            name=op.f("fk_replay_items_run_id_replay_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["img_unique_id"],
            ["images.img_unique_id"],
            name=op.f("fk_replay_items_img_unique_id_images"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["answer_id"],
            ["model_answers.answer_id"],
            name=op.f("fk_replay_items_answer_id_model_answers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("run_id", "img_unique_id", name=op.f("pk_replay_items")),
    )
    op.create_index(op.f("ix_replay_items_img_unique_id"), "replay_items", ["img_unique_id"])
    op.create_index(
        "ix_replay_items_pending",
        "replay_items",
        ["run_id", "img_unique_id"],
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_table("replay_items")
    op.drop_table("replay_runs")

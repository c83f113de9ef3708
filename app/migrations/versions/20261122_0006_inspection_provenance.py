"""Provenance on the ledger: which model service, model and agent produced a result.

`inspections.model_service_url`, `model_name`, `model_version` (as the model service
reports them; null when it does not, and on rows stored before this migration) and
`agent_version`. `model_version` is indexed for the image list's filter. The PRD's
`images`/`classes`/`regions` tables are unchanged.

Revision ID: 20261122_0006
Revises: 20261122_0005
Create Date: 2026-11-22 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261122_0006"
down_revision: str | None = "20261122_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("inspections", sa.Column("model_service_url", sa.Text(), nullable=True))
    op.add_column("inspections", sa.Column("model_name", sa.String(length=128), nullable=True))
    op.add_column("inspections", sa.Column("model_version", sa.String(length=128), nullable=True))
    op.add_column("inspections", sa.Column("agent_version", sa.String(length=64), nullable=True))
    op.create_index(
        op.f("ix_inspections_model_version"), "inspections", ["model_version"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_inspections_model_version"), table_name="inspections")
    op.drop_column("inspections", "agent_version")
    op.drop_column("inspections", "model_version")
    op.drop_column("inspections", "model_name")
    op.drop_column("inspections", "model_service_url")

"""What a waiting batch image waits for, as a column (`inspections.waiting_for`).

Until now a wait for the object store was told from a wait for the model service by a
`storage: ` prefix on `last_error`. The column holds `model_service` or `storage` while
the image waits (`next_attempt_at` set) and null otherwise; rows waiting now are
converted and their prefix dropped.

Revision ID: 20261207_0027
Revises: 20261207_0021
Create Date: 2026-12-07 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261207_0027"
down_revision: str | None = "20261207_0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("inspections", sa.Column("waiting_for", sa.String(length=16), nullable=True))
    op.create_check_constraint(
        "waiting_for", "inspections", "waiting_for IN ('model_service', 'storage')"
    )
    op.execute(
        "UPDATE inspections SET waiting_for = CASE WHEN last_error LIKE 'storage: %'"
        " THEN 'storage' ELSE 'model_service' END WHERE next_attempt_at IS NOT NULL"
    )
    op.execute(
        "UPDATE inspections SET last_error = substr(last_error, 10)"
        " WHERE last_error LIKE 'storage: %'"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE inspections SET last_error = 'storage: ' || last_error"
        " WHERE waiting_for = 'storage' AND last_error IS NOT NULL"
    )
    op.drop_constraint("waiting_for", "inspections", type_="check")
    op.drop_column("inspections", "waiting_for")

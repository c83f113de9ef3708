"""Webhook secret rotation and the board's conveyor lane.

`webhook_endpoints.previous_secret` and `previous_secret_until`: the replaced secret of an
endpoint and the end of the overlap during which deliveries are signed with it too
(docs/webhooks.md#rotating-a-secret). `inspection_contexts.lane`: the station's conveyor
lane the board went through, from 1 (docs/boards.md; CFX `WorkStarted.Lane`, docs/cfx.md).

Revision ID: 20261208_0030
Revises: 20261207_0023
Create Date: 2026-12-08 00:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261208_0030"
down_revision: str | None = "20261207_0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "webhook_endpoints", sa.Column("previous_secret", sa.String(length=128), nullable=True)
    )
    op.add_column(
        "webhook_endpoints",
        sa.Column("previous_secret_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("inspection_contexts", sa.Column("lane", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("inspection_contexts", "lane")
    op.drop_column("webhook_endpoints", "previous_secret_until")
    op.drop_column("webhook_endpoints", "previous_secret")

"""Verdicts on shadow/replay answer regions in the review history (docs/models.md).

`review_events.answer_region_id`: the answer region (`answer_regions`) a verdict event
is about, for a region only a shadow or replay answer has (`region_unique_id` is then
null). No foreign key, like `region_unique_id`: the history goes only with its image.
`answer_regions.reason`: the reason code of its `real` or `false_call` verdict, as
`region_verdicts.reason` is a primary region's.

Revision ID: 20261208_0029
Revises: 20261207_0023
Create Date: 2026-12-08 00:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261208_0029"
down_revision: str | None = "20261208_0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("review_events", sa.Column("answer_region_id", sa.BigInteger(), nullable=True))
    op.add_column("answer_regions", sa.Column("reason", sa.String(length=32), nullable=True))


def downgrade() -> None:
    op.drop_column("answer_regions", "reason")
    op.execute("DELETE FROM review_events WHERE answer_region_id IS NOT NULL")
    op.drop_column("review_events", "answer_region_id")

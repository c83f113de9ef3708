"""Indexes of the review-state filters of History, `/query/defects` and the exports.

`review_state=has_false_calls` asks "does this image have a `false_call` verdict?": a
partial index of the false calls by image answers it with one probe per image, and lets
the planner start from the (usually few) false calls instead of walking every image.
`disposition=pass|repair|scrap` reads `image_dispositions` by disposition (its primary
key is the image id alone). `unreviewed` / `reviewed` use the existing
`ix_regions_img_unique_id` and the verdicts' primary key. The PRD's
`images`/`classes`/`regions` tables are unchanged.

Revision ID: 20261207_0016
Revises: 20261202_0013
Create Date: 2026-12-07 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261207_0016"
down_revision: str | None = "20261202_0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_region_verdicts_false_calls",
        "region_verdicts",
        ["img_unique_id"],
        postgresql_where=sa.text("verdict = 'false_call'"),
    )
    op.create_index(
        "ix_image_dispositions_disposition_img_unique_id",
        "image_dispositions",
        ["disposition", "img_unique_id"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_image_dispositions_disposition_img_unique_id", table_name="image_dispositions"
    )
    op.drop_index("ix_region_verdicts_false_calls", table_name="region_verdicts")

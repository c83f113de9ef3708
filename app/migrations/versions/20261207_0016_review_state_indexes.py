"""Review state per board, for the review-state filters of History, `/query/defects` and
the exports.

`review_boards` holds one row per board that has a verdict or a disposition: its image's
`timestamp`, its number of `regions`, how many of them have a verdict (`reviewed`) and a
`false_call` verdict (`false_calls`), and its current `disposition`. Triggers on
`region_verdicts` and `image_dispositions` keep it (the first verdict or disposition of a
board adds its row, counting the board's regions, which never change once stored); rows
go with their image (ON DELETE CASCADE). A board without a row has no verdict and no
disposition.

Its partial indexes, in the listing's order (`timestamp`, `img_unique_id`), hold exactly
the fully reviewed boards, those with a false call, and those with each disposition: a
page of History with one of these filters is a walk of the right index, however few of a
million images match and wherever they lie in time. `aoi_review_boards_rebuild()`
recomputes the table from the verdicts and dispositions (this migration runs it for rows
stored before it). The PRD's `images`/`classes`/`regions` tables are unchanged.

Revision ID: 20261207_0016
Revises: 20261207_0015
Create Date: 2026-12-07 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261207_0016"
down_revision: str | None = "20261207_0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTIONS = """
CREATE FUNCTION aoi_review_board_row(board varchar) RETURNS void LANGUAGE sql AS $$
    INSERT INTO review_boards (img_unique_id, timestamp, regions)
    SELECT i.img_unique_id, i.timestamp,
           (SELECT count(*) FROM regions r WHERE r.img_unique_id = i.img_unique_id)
    FROM images i WHERE i.img_unique_id = board
    ON CONFLICT (img_unique_id) DO NOTHING
$$;

CREATE FUNCTION aoi_review_boards_verdict() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM aoi_review_board_row(NEW.img_unique_id);
        UPDATE review_boards SET reviewed = reviewed + 1,
            false_calls = false_calls + (NEW.verdict = 'false_call')::int
        WHERE img_unique_id = NEW.img_unique_id;
    ELSIF TG_OP = 'UPDATE' THEN
        UPDATE review_boards SET false_calls = false_calls
            + (NEW.verdict = 'false_call')::int - (OLD.verdict = 'false_call')::int
        WHERE img_unique_id = NEW.img_unique_id;
    ELSE
        -- Also reached when the image is deleted: its row is then gone or going.
        UPDATE review_boards SET reviewed = reviewed - 1,
            false_calls = false_calls - (OLD.verdict = 'false_call')::int
        WHERE img_unique_id = OLD.img_unique_id;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION aoi_review_boards_disposition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE review_boards SET disposition = NULL WHERE img_unique_id = OLD.img_unique_id;
    ELSE
        PERFORM aoi_review_board_row(NEW.img_unique_id);
        UPDATE review_boards SET disposition = NEW.disposition
        WHERE img_unique_id = NEW.img_unique_id;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION aoi_review_boards_rebuild() RETURNS void LANGUAGE sql AS $$
    DELETE FROM review_boards;
    INSERT INTO review_boards
        (img_unique_id, timestamp, regions, reviewed, false_calls, disposition)
    SELECT i.img_unique_id, i.timestamp,
           (SELECT count(*) FROM regions r WHERE r.img_unique_id = i.img_unique_id),
           coalesce(v.reviewed, 0), coalesce(v.false_calls, 0), d.disposition
    FROM images i
    LEFT JOIN (
        SELECT img_unique_id, count(*) AS reviewed,
               count(*) FILTER (WHERE verdict = 'false_call') AS false_calls
        FROM region_verdicts GROUP BY img_unique_id
    ) v ON v.img_unique_id = i.img_unique_id
    LEFT JOIN image_dispositions d ON d.img_unique_id = i.img_unique_id
    WHERE v.img_unique_id IS NOT NULL OR d.img_unique_id IS NOT NULL;
$$;

CREATE TRIGGER aoi_review_boards_verdict
AFTER INSERT OR UPDATE OR DELETE ON region_verdicts
FOR EACH ROW EXECUTE FUNCTION aoi_review_boards_verdict();

CREATE TRIGGER aoi_review_boards_disposition
AFTER INSERT OR UPDATE OR DELETE ON image_dispositions
FOR EACH ROW EXECUTE FUNCTION aoi_review_boards_disposition();
"""


def upgrade() -> None:
    op.create_table(
        "review_boards",
        sa.Column("img_unique_id", sa.String(length=22), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("regions", sa.Integer(), nullable=False),
        sa.Column("reviewed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("false_calls", sa.Integer(), server_default="0", nullable=False),
        sa.Column("disposition", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["img_unique_id"],
            ["images.img_unique_id"],
            name=op.f("fk_review_boards_img_unique_id_images"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("img_unique_id", name=op.f("pk_review_boards")),
    )
    op.create_index(
        "ix_review_boards_reviewed",
        "review_boards",
        ["timestamp", "img_unique_id"],
        postgresql_where=sa.text("regions > 0 AND reviewed >= regions"),
    )
    op.create_index(
        "ix_review_boards_false_calls",
        "review_boards",
        ["timestamp", "img_unique_id"],
        postgresql_where=sa.text("false_calls > 0"),
    )
    op.create_index(
        "ix_review_boards_disposition",
        "review_boards",
        ["disposition", "timestamp", "img_unique_id"],
        postgresql_where=sa.text("disposition IS NOT NULL"),
    )
    op.execute(_FUNCTIONS)
    op.execute("SELECT aoi_review_boards_rebuild()")


def downgrade() -> None:
    op.execute("DROP TRIGGER aoi_review_boards_disposition ON image_dispositions")
    op.execute("DROP TRIGGER aoi_review_boards_verdict ON region_verdicts")
    for function in (
        "aoi_review_boards_rebuild()",
        "aoi_review_boards_disposition()",
        "aoi_review_boards_verdict()",
        "aoi_review_board_row(varchar)",
    ):
        op.execute(f"DROP FUNCTION {function}")
    op.drop_table("review_boards")

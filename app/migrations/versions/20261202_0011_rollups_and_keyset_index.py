"""Daily rollups kept by triggers, and the index of keyset pagination.

* `rollup_images_daily`, `rollup_classes_daily`, `rollup_heatmap_daily`,
  `rollup_heatmap_daily_all`, `rollup_timings_daily` (see `app/models/rollups.py`): per
  UTC day sums the dashboard and `/api/stats` read instead of scanning every row.
* Triggers keep them equal to the direct aggregates:
  - AFTER INSERT (per statement, over its transition table: one upsert per statement,
    however many rows a bulk insert or COPY brings) on images, classes, regions;
  - BEFORE DELETE (per row) on images, classes, regions: an image's delete subtracts
    its whole contribution while its classes and regions still exist; the cascaded
    deletes of its classes and regions then find the image gone and subtract nothing
    (a class or region deleted on its own subtracts itself);
  - AFTER INSERT/UPDATE/DELETE (per statement) on inspections, for the timing means of
    `succeeded` rows (statements touching no `succeeded` row return at once).
  Every rollup write first takes one transaction-level advisory lock, so concurrent
  writers update the hot rows of today one at a time and never deadlock.
  The PRD tables are written once per image by the agent: an UPDATE of their counted
  columns is not followed; `SELECT aoi_rollups_rebuild()` recomputes everything.
* `ix_images_timestamp_img_unique_id`: the listing's order (timestamp, id) as one index,
  so a keyset page is an index range scan with no sort.

The PRD's `images`/`classes`/`regions` keep their columns.

Revision ID: 20261202_0011
Revises: 20261202_0008
Create Date: 2026-12-02 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261202_0011"
down_revision: str | None = "20261202_0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The first key "AOR" (0x414F52); app.services.inspection.repository uses "AOI" for hashes.
_LOCK = "PERFORM pg_advisory_xact_lock(4280146, 0);"

_FUNCTIONS = f"""
CREATE FUNCTION aoi_utc_day(ts timestamptz) RETURNS date
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT (ts AT TIME ZONE 'UTC')::date $$;

-- The 0-based cell (of 32) of a centroid coordinate over an image side, as the dashboard's
-- direct query computes it: least(width_bucket(c / side, 0, 1, 32), 32) - 1, floored at 0.
-- A NaN coordinate or a zero side (which width_bucket / the division would refuse, failing
-- the whole insert) counts in cell 0.
CREATE FUNCTION aoi_heat_cell(coordinate double precision, side integer) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN side = 0 OR coordinate = 'NaN'::float8 THEN 0
                 ELSE greatest(least(width_bucket(coordinate / side, 0.0, 1.0, 32), 32) - 1, 0)
                 END::smallint $$;

CREATE FUNCTION aoi_rollup_images_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_LOCK}
    INSERT INTO rollup_images_daily AS r (day, images, images_with_defects, processing_seconds)
    SELECT aoi_utc_day(n.timestamp), count(*), 0, sum(n.processing_time_seconds)
    FROM new_rows n GROUP BY 1 ORDER BY 1
    ON CONFLICT (day) DO UPDATE SET
        images = r.images + EXCLUDED.images,
        processing_seconds = r.processing_seconds + EXCLUDED.processing_seconds;
    RETURN NULL;
END $$;

CREATE FUNCTION aoi_rollup_classes_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_LOCK}
    INSERT INTO rollup_classes_daily AS r (day, class_name, images, regions, area_pixels)
    SELECT aoi_utc_day(i.timestamp), n.class_name, count(*), sum(n.total_regions),
           sum(n.total_area_pixels)
    FROM new_rows n JOIN images i ON i.img_unique_id = n.img_unique_id
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (day, class_name) DO UPDATE SET
        images = r.images + EXCLUDED.images,
        regions = r.regions + EXCLUDED.regions,
        area_pixels = r.area_pixels + EXCLUDED.area_pixels;
    -- Images whose first class with regions arrived in this statement.
    UPDATE rollup_images_daily r SET images_with_defects = r.images_with_defects + g.n
    FROM (
        SELECT aoi_utc_day(i.timestamp) AS day, count(*) AS n
        FROM images i
        WHERE i.img_unique_id IN (SELECT img_unique_id FROM new_rows WHERE total_regions > 0)
          AND NOT EXISTS (
              SELECT 1 FROM classes c
              WHERE c.img_unique_id = i.img_unique_id AND c.total_regions > 0
                AND NOT EXISTS (SELECT 1 FROM new_rows x
                                WHERE x.class_unique_id = c.class_unique_id))
        GROUP BY 1
    ) g
    WHERE r.day = g.day;
    RETURN NULL;
END $$;

CREATE FUNCTION aoi_rollup_regions_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_LOCK}
    WITH cells AS (
        SELECT c.class_name, aoi_utc_day(i.timestamp) AS day,
               aoi_heat_cell(n.centroid_y, i.image_height) AS cell_row,
               aoi_heat_cell(n.centroid_x, i.image_width) AS cell_col, count(*) AS n
        FROM new_rows n
        JOIN classes c ON c.class_unique_id = n.class_unique_id
        JOIN images i ON i.img_unique_id = n.img_unique_id
        GROUP BY 1, 2, 3, 4
    ), by_class AS (
        INSERT INTO rollup_heatmap_daily AS r (class_name, day, cell_row, cell_col, regions)
        SELECT class_name, day, cell_row, cell_col, n FROM cells ORDER BY 1, 2, 3, 4
        ON CONFLICT (class_name, day, cell_row, cell_col) DO UPDATE SET
            regions = r.regions + EXCLUDED.regions
    )
    INSERT INTO rollup_heatmap_daily_all AS r (day, cell_row, cell_col, regions)
    SELECT day, cell_row, cell_col, sum(n) FROM cells GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (day, cell_row, cell_col) DO UPDATE SET regions = r.regions + EXCLUDED.regions;
    RETURN NULL;
END $$;

-- Subtracts the heat cells of the regions selected by (image, class or null = all).
CREATE FUNCTION aoi_rollup_subtract_cells(image images, only_class bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE rollup_heatmap_daily r SET regions = r.regions - g.n
    FROM (
        SELECT c.class_name, aoi_heat_cell(g.centroid_y, image.image_height) AS cell_row,
               aoi_heat_cell(g.centroid_x, image.image_width) AS cell_col, count(*) AS n
        FROM regions g JOIN classes c ON c.class_unique_id = g.class_unique_id
        WHERE g.img_unique_id = image.img_unique_id
          AND (only_class IS NULL OR g.class_unique_id = only_class)
        GROUP BY 1, 2, 3
    ) g
    WHERE r.class_name = g.class_name AND r.day = aoi_utc_day(image.timestamp)
      AND r.cell_row = g.cell_row AND r.cell_col = g.cell_col;
    UPDATE rollup_heatmap_daily_all r SET regions = r.regions - g.n
    FROM (
        SELECT aoi_heat_cell(g.centroid_y, image.image_height) AS cell_row,
               aoi_heat_cell(g.centroid_x, image.image_width) AS cell_col, count(*) AS n
        FROM regions g
        WHERE g.img_unique_id = image.img_unique_id
          AND (only_class IS NULL OR g.class_unique_id = only_class)
        GROUP BY 1, 2
    ) g
    WHERE r.day = aoi_utc_day(image.timestamp) AND r.cell_row = g.cell_row
      AND r.cell_col = g.cell_col;
END $$;

CREATE FUNCTION aoi_rollup_image_deleting() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d date := aoi_utc_day(OLD.timestamp);
BEGIN
    {_LOCK}
    UPDATE rollup_images_daily SET
        images = images - 1,
        images_with_defects = images_with_defects - (EXISTS (
            SELECT 1 FROM classes WHERE img_unique_id = OLD.img_unique_id AND total_regions > 0
        ))::int,
        processing_seconds = processing_seconds - OLD.processing_time_seconds
    WHERE day = d;
    UPDATE rollup_classes_daily r SET
        images = r.images - g.n, regions = r.regions - g.regions,
        area_pixels = r.area_pixels - g.area
    FROM (
        SELECT class_name, count(*) AS n, sum(total_regions) AS regions,
               sum(total_area_pixels) AS area
        FROM classes WHERE img_unique_id = OLD.img_unique_id GROUP BY 1
    ) g
    WHERE r.day = d AND r.class_name = g.class_name;
    PERFORM aoi_rollup_subtract_cells(OLD, NULL);
    RETURN OLD;
END $$;

CREATE FUNCTION aoi_rollup_class_deleting() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    image images;
BEGIN
    SELECT * INTO image FROM images WHERE img_unique_id = OLD.img_unique_id;
    IF NOT FOUND THEN
        RETURN OLD;  -- its image's delete subtracted it already
    END IF;
    {_LOCK}
    UPDATE rollup_classes_daily SET
        images = images - 1, regions = regions - OLD.total_regions,
        area_pixels = area_pixels - OLD.total_area_pixels
    WHERE day = aoi_utc_day(image.timestamp) AND class_name = OLD.class_name;
    IF OLD.total_regions > 0 AND NOT EXISTS (
        SELECT 1 FROM classes WHERE img_unique_id = OLD.img_unique_id AND total_regions > 0
          AND class_unique_id <> OLD.class_unique_id
    ) THEN
        UPDATE rollup_images_daily SET images_with_defects = images_with_defects - 1
        WHERE day = aoi_utc_day(image.timestamp);
    END IF;
    PERFORM aoi_rollup_subtract_cells(image, OLD.class_unique_id);
    RETURN OLD;
END $$;

CREATE FUNCTION aoi_rollup_region_deleting() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    image images;
    name varchar(128);
    cell_r smallint;
    cell_c smallint;
BEGIN
    SELECT * INTO image FROM images WHERE img_unique_id = OLD.img_unique_id;
    IF NOT FOUND THEN
        RETURN OLD;
    END IF;
    SELECT class_name INTO name FROM classes WHERE class_unique_id = OLD.class_unique_id;
    IF NOT FOUND THEN
        RETURN OLD;  -- its class's delete subtracted it already
    END IF;
    {_LOCK}
    cell_r := aoi_heat_cell(OLD.centroid_y, image.image_height);
    cell_c := aoi_heat_cell(OLD.centroid_x, image.image_width);
    UPDATE rollup_heatmap_daily SET regions = regions - 1
    WHERE class_name = name AND day = aoi_utc_day(image.timestamp)
      AND cell_row = cell_r AND cell_col = cell_c;
    UPDATE rollup_heatmap_daily_all SET regions = regions - 1
    WHERE day = aoi_utc_day(image.timestamp) AND cell_row = cell_r AND cell_col = cell_c;
    RETURN OLD;
END $$;

"""

_TIMING_ROWS = {
    "insert": "SELECT 1, n.created_at, n.model_service_seconds, n.total_seconds"
    " FROM new_rows n WHERE n.status = 'succeeded'",
    "update": "SELECT 1, n.created_at, n.model_service_seconds, n.total_seconds"
    " FROM new_rows n WHERE n.status = 'succeeded' UNION ALL"
    " SELECT -1, o.created_at, o.model_service_seconds, o.total_seconds"
    " FROM old_rows o WHERE o.status = 'succeeded'",
    "delete": "SELECT -1, o.created_at, o.model_service_seconds, o.total_seconds"
    " FROM old_rows o WHERE o.status = 'succeeded'",
}
_TIMING_REFERENCING = {
    "insert": "NEW TABLE AS new_rows",
    "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "delete": "OLD TABLE AS old_rows",
}


def _timing_function(event: str) -> str:
    """The trigger function adding the `succeeded` rows a statement inserted (updated to)
    and subtracting those it deleted (updated from); returns at once, without the lock,
    when the statement touched no `succeeded` row."""
    rows = _TIMING_ROWS[event]
    return f"""
CREATE FUNCTION aoi_rollup_timings_{event}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS ({rows}) THEN
        RETURN NULL;
    END IF;
    {_LOCK}
    INSERT INTO rollup_timings_daily AS r
        (day, succeeded, model_service_n, model_service_seconds, total_n, total_seconds)
    SELECT aoi_utc_day(t.created_at), sum(t.sign),
           sum(t.sign * (t.model_service_seconds IS NOT NULL)::int),
           coalesce(sum(t.sign * t.model_service_seconds), 0),
           sum(t.sign * (t.total_seconds IS NOT NULL)::int),
           coalesce(sum(t.sign * t.total_seconds), 0)
    FROM ({rows}) AS t(sign, created_at, model_service_seconds, total_seconds)
    GROUP BY 1 ORDER BY 1
    ON CONFLICT (day) DO UPDATE SET
        succeeded = r.succeeded + EXCLUDED.succeeded,
        model_service_n = r.model_service_n + EXCLUDED.model_service_n,
        model_service_seconds = r.model_service_seconds + EXCLUDED.model_service_seconds,
        total_n = r.total_n + EXCLUDED.total_n,
        total_seconds = r.total_seconds + EXCLUDED.total_seconds;
    RETURN NULL;
END $$;
"""


_REBUILD = f"""
CREATE FUNCTION aoi_rollups_rebuild() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    {_LOCK}
    DELETE FROM rollup_images_daily;
    DELETE FROM rollup_classes_daily;
    DELETE FROM rollup_heatmap_daily;
    DELETE FROM rollup_heatmap_daily_all;
    DELETE FROM rollup_timings_daily;
    INSERT INTO rollup_images_daily (day, images, images_with_defects, processing_seconds)
    SELECT aoi_utc_day(i.timestamp), count(*),
           count(*) FILTER (WHERE EXISTS (SELECT 1 FROM classes c
                            WHERE c.img_unique_id = i.img_unique_id AND c.total_regions > 0)),
           sum(i.processing_time_seconds)
    FROM images i GROUP BY 1;
    INSERT INTO rollup_classes_daily (day, class_name, images, regions, area_pixels)
    SELECT aoi_utc_day(i.timestamp), c.class_name, count(*), sum(c.total_regions),
           sum(c.total_area_pixels)
    FROM classes c JOIN images i ON i.img_unique_id = c.img_unique_id GROUP BY 1, 2;
    INSERT INTO rollup_heatmap_daily (class_name, day, cell_row, cell_col, regions)
    SELECT c.class_name, aoi_utc_day(i.timestamp), aoi_heat_cell(g.centroid_y, i.image_height),
           aoi_heat_cell(g.centroid_x, i.image_width), count(*)
    FROM regions g
    JOIN classes c ON c.class_unique_id = g.class_unique_id
    JOIN images i ON i.img_unique_id = g.img_unique_id
    GROUP BY 1, 2, 3, 4;
    INSERT INTO rollup_heatmap_daily_all (day, cell_row, cell_col, regions)
    SELECT day, cell_row, cell_col, sum(regions) FROM rollup_heatmap_daily GROUP BY 1, 2, 3;
    INSERT INTO rollup_timings_daily
        (day, succeeded, model_service_n, model_service_seconds, total_n, total_seconds)
    SELECT aoi_utc_day(created_at), count(*), count(model_service_seconds),
           coalesce(sum(model_service_seconds), 0), count(total_seconds),
           coalesce(sum(total_seconds), 0)
    FROM inspections WHERE status = 'succeeded' GROUP BY 1;
END $$;
"""

_TRIGGERS = [
    # (trigger, table, timing and events, transition tables, level, function)
    ("aoi_rollup_images_ins", "images", "AFTER INSERT", "NEW TABLE AS new_rows", "STATEMENT",
     "aoi_rollup_images_inserted"),
    ("aoi_rollup_classes_ins", "classes", "AFTER INSERT", "NEW TABLE AS new_rows", "STATEMENT",
     "aoi_rollup_classes_inserted"),
    ("aoi_rollup_regions_ins", "regions", "AFTER INSERT", "NEW TABLE AS new_rows", "STATEMENT",
     "aoi_rollup_regions_inserted"),
    ("aoi_rollup_images_del", "images", "BEFORE DELETE", None, "ROW",
     "aoi_rollup_image_deleting"),
    ("aoi_rollup_classes_del", "classes", "BEFORE DELETE", None, "ROW",
     "aoi_rollup_class_deleting"),
    ("aoi_rollup_regions_del", "regions", "BEFORE DELETE", None, "ROW",
     "aoi_rollup_region_deleting"),
    *[
        (f"aoi_rollup_timings_{event}", "inspections", f"AFTER {event.upper()}",
         _TIMING_REFERENCING[event], "STATEMENT", f"aoi_rollup_timings_{event}")
        for event in ("insert", "update", "delete")
    ],
]  # fmt: skip

_DROP_FUNCTIONS = [
    "aoi_rollups_rebuild()",
    "aoi_rollup_timings_insert()",
    "aoi_rollup_timings_update()",
    "aoi_rollup_timings_delete()",
    "aoi_rollup_region_deleting()",
    "aoi_rollup_class_deleting()",
    "aoi_rollup_image_deleting()",
    "aoi_rollup_subtract_cells(images, bigint)",
    "aoi_rollup_regions_inserted()",
    "aoi_rollup_classes_inserted()",
    "aoi_rollup_images_inserted()",
    "aoi_heat_cell(double precision, integer)",
    "aoi_utc_day(timestamptz)",
]


def upgrade() -> None:
    op.create_index("ix_images_timestamp_img_unique_id", "images", ["timestamp", "img_unique_id"])
    op.create_table(
        "rollup_images_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("images", sa.BigInteger(), nullable=False),
        sa.Column("images_with_defects", sa.BigInteger(), nullable=False),
        sa.Column("processing_seconds", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_rollup_images_daily")),
    )
    op.create_table(
        "rollup_classes_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("class_name", sa.String(length=128), nullable=False),
        sa.Column("images", sa.BigInteger(), nullable=False),
        sa.Column("regions", sa.BigInteger(), nullable=False),
        sa.Column("area_pixels", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "class_name", name=op.f("pk_rollup_classes_daily")),
    )
    op.create_table(
        "rollup_heatmap_daily",
        sa.Column("class_name", sa.String(length=128), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("cell_row", sa.SmallInteger(), nullable=False),
        sa.Column("cell_col", sa.SmallInteger(), nullable=False),
        sa.Column("regions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "class_name", "day", "cell_row", "cell_col", name=op.f("pk_rollup_heatmap_daily")
        ),
    )
    op.create_table(
        "rollup_heatmap_daily_all",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("cell_row", sa.SmallInteger(), nullable=False),
        sa.Column("cell_col", sa.SmallInteger(), nullable=False),
        sa.Column("regions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "cell_row", "cell_col", name=op.f("pk_rollup_heatmap_daily_all")
        ),
    )
    op.create_table(
        "rollup_timings_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("succeeded", sa.BigInteger(), nullable=False),
        sa.Column("model_service_n", sa.BigInteger(), nullable=False),
        sa.Column("model_service_seconds", sa.Double(), nullable=False),
        sa.Column("total_n", sa.BigInteger(), nullable=False),
        sa.Column("total_seconds", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_rollup_timings_daily")),
    )
    op.execute(_FUNCTIONS)
    for event in ("insert", "update", "delete"):
        op.execute(_timing_function(event))
    op.execute(_REBUILD)
    for name, table, when, referencing, level, function in _TRIGGERS:
        refs = f" REFERENCING {referencing}" if referencing else ""
        op.execute(
            f"CREATE TRIGGER {name} {when} ON {table}{refs} FOR EACH {level}"
            f" EXECUTE FUNCTION {function}()"
        )
    op.execute("SELECT aoi_rollups_rebuild()")  # rows stored before this migration


def downgrade() -> None:
    for name, table, *_ in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON {table}")
    for function in _DROP_FUNCTIONS:
        op.execute(f"DROP FUNCTION {function}")
    for table in (
        "rollup_timings_daily",
        "rollup_heatmap_daily_all",
        "rollup_heatmap_daily",
        "rollup_classes_daily",
        "rollup_images_daily",
    ):
        op.drop_table(table)
    op.drop_index("ix_images_timestamp_img_unique_id", table_name="images")

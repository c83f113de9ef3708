"""The daily rollups split by model version, so a dashboard filtered by it reads them too.

Every rollup table of migration 20261202_0011 gets a key column `model_version`
(varchar(128), '' = none: no ledger row, or one whose model service reported no
version): the version of the image's `inspections` row (a primary-key lookup by
`img_unique_id`), for `rollup_timings_daily` the version of the ledger row itself. The
tables are recreated with the column in their primary key and refilled by
`aoi_rollups_rebuild()`.

How an image's contribution stays under its ledger row's version whatever the order of
the writes:

* the insert and delete triggers of `images`, `classes` and `regions` look the version up
  when they fire (the agent updates the ledger row to `succeeded` with its version before
  it inserts the result, in the same transaction, so that is the final one);
* AFTER INSERT/UPDATE/DELETE statement triggers on `inspections` move the whole
  contribution of images that are already stored when their ledger row appears, changes
  its `model_version` or goes (to ''), by `aoi_rollup_add_images(ids, versions, signs)`;
  a statement changing no version of a stored image does nothing but a hash aggregate
  over its transition rows.
* Deleting an image subtracts its contribution by the same function while its classes
  and regions still exist (BEFORE DELETE); the cascades then find the image gone.

The PRD's `images`/`classes`/`regions` keep their columns.

Revision ID: 20261202_0013
Revises: 20261202_0012
Create Date: 2026-12-02 14:00:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "20261202_0013"
down_revision: str | None = "20261202_0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LOCK = "PERFORM pg_advisory_xact_lock(4280146, 0);"  # as in 20261202_0011


def _keys(table: str) -> list[sa.Column[Any]]:
    """The key columns of a rollup table in 20261202_0011."""
    day = sa.Column("day", sa.Date(), nullable=False)
    name = sa.Column("class_name", sa.String(length=128), nullable=False)
    cells = [
        sa.Column("cell_row", sa.SmallInteger(), nullable=False),
        sa.Column("cell_col", sa.SmallInteger(), nullable=False),
    ]
    keys: dict[str, list[sa.Column[Any]]] = {
        "rollup_images_daily": [day],
        "rollup_classes_daily": [day, name],
        "rollup_heatmap_daily": [name, day, *cells],
        "rollup_heatmap_daily_all": [day, *cells],
        "rollup_timings_daily": [day],
    }
    return keys[table]


# Measure columns per rollup table: bigint counts and sums, double sums of seconds.
_MEASURES: dict[str, list[tuple[str, bool]]] = {
    "rollup_images_daily": [
        ("images", False),
        ("images_with_defects", False),
        ("processing_seconds", True),
    ],
    "rollup_classes_daily": [("images", False), ("regions", False), ("area_pixels", False)],
    "rollup_heatmap_daily": [("regions", False)],
    "rollup_heatmap_daily_all": [("regions", False)],
    "rollup_timings_daily": [
        ("succeeded", False),
        ("model_service_n", False),
        ("model_service_seconds", True),
        ("total_n", False),
        ("total_seconds", True),
    ],
}


def _create_tables(by_version: bool) -> None:
    """The five rollup tables, keyed as in 0011 plus `model_version` when `by_version`."""
    for table, measures in _MEASURES.items():
        keys = _keys(table)
        if by_version:
            keys.append(sa.Column("model_version", sa.String(length=128), nullable=False))
        op.create_table(
            table,
            *keys,
            *[
                sa.Column(name, sa.Double() if seconds else sa.BigInteger(), nullable=False)
                for name, seconds in measures
            ],
            sa.PrimaryKeyConstraint(*[c.name for c in keys], name=op.f(f"pk_{table}")),
        )


def _drop_tables() -> None:
    for table in reversed(_MEASURES):
        op.drop_table(table)


def _previous() -> ModuleType:
    """Migration 20261202_0011, for the names and bodies of its functions and triggers."""
    path = Path(__file__).with_name("20261202_0011_rollups_and_keyset_index.py")
    spec = importlib.util.spec_from_file_location("aoi_migration_20261202_0011", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"migration 20261202_0011 not found at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The end of one statement of `aoi_rollup_add_images` and one of the regions insert trigger,
# after their CTE `cells` (class_name, day, cell_row, cell_col, version, n): adds the cells
# to both heat map rollups.
_UPSERT_CELLS = """), by_class AS (
        INSERT INTO rollup_heatmap_daily AS r
            (class_name, day, cell_row, cell_col, model_version, regions)
        SELECT * FROM cells ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (class_name, day, cell_row, cell_col, model_version) DO UPDATE SET
            regions = r.regions + EXCLUDED.regions
    )
    INSERT INTO rollup_heatmap_daily_all AS r (day, cell_row, cell_col, model_version, regions)
    SELECT day, cell_row, cell_col, version, sum(n) FROM cells
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (day, cell_row, cell_col, model_version) DO UPDATE SET
        regions = r.regions + EXCLUDED.regions;"""

_FUNCTIONS = f"""
-- The model version an image's rows count under: its ledger row's, '' when none.
CREATE FUNCTION aoi_image_model_version(image_id text) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT coalesce((SELECT model_version FROM inspections
                           WHERE img_unique_id = image_id), '') $$;

-- Adds signs[k] times the whole contribution of stored image ids[k] (its images row,
-- classes and regions as they are now) under model version versions[k]; ids that are not
-- stored add nothing.
CREATE FUNCTION aoi_rollup_add_images(ids text[], versions text[], signs integer[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    {_LOCK}
    INSERT INTO rollup_images_daily AS r
        (day, model_version, images, images_with_defects, processing_seconds)
    SELECT aoi_utc_day(i.timestamp), m.version, sum(m.sign),
           sum(m.sign * (EXISTS (SELECT 1 FROM classes c WHERE c.img_unique_id = i.img_unique_id
                                 AND c.total_regions > 0))::int),
           sum(m.sign * i.processing_time_seconds)
    FROM unnest(ids, versions, signs) AS m(id, version, sign)
    JOIN images i ON i.img_unique_id = m.id
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (day, model_version) DO UPDATE SET
        images = r.images + EXCLUDED.images,
        images_with_defects = r.images_with_defects + EXCLUDED.images_with_defects,
        processing_seconds = r.processing_seconds + EXCLUDED.processing_seconds;
    INSERT INTO rollup_classes_daily AS r
        (day, class_name, model_version, images, regions, area_pixels)
    SELECT aoi_utc_day(i.timestamp), c.class_name, m.version, sum(m.sign),
           sum(m.sign * c.total_regions), sum(m.sign * c.total_area_pixels)
    FROM unnest(ids, versions, signs) AS m(id, version, sign)
    JOIN images i ON i.img_unique_id = m.id
    JOIN classes c ON c.img_unique_id = m.id
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (day, class_name, model_version) DO UPDATE SET
        images = r.images + EXCLUDED.images,
        regions = r.regions + EXCLUDED.regions,
        area_pixels = r.area_pixels + EXCLUDED.area_pixels;
    WITH cells AS (
        SELECT c.class_name, aoi_utc_day(i.timestamp) AS day,
               aoi_heat_cell(g.centroid_y, i.image_height) AS cell_row,
               aoi_heat_cell(g.centroid_x, i.image_width) AS cell_col, m.version,
               sum(m.sign) AS n
        FROM unnest(ids, versions, signs) AS m(id, version, sign)
        JOIN images i ON i.img_unique_id = m.id
        JOIN regions g ON g.img_unique_id = m.id
        JOIN classes c ON c.class_unique_id = g.class_unique_id
        GROUP BY 1, 2, 3, 4, 5
    {_UPSERT_CELLS}
END $$;

CREATE FUNCTION aoi_rollup_images_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_LOCK}
    INSERT INTO rollup_images_daily AS r
        (day, model_version, images, images_with_defects, processing_seconds)
    SELECT aoi_utc_day(n.timestamp), coalesce(l.model_version, ''), count(*), 0,
           sum(n.processing_time_seconds)
    FROM new_rows n LEFT JOIN inspections l ON l.img_unique_id = n.img_unique_id
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (day, model_version) DO UPDATE SET
        images = r.images + EXCLUDED.images,
        processing_seconds = r.processing_seconds + EXCLUDED.processing_seconds;
    RETURN NULL;
END $$;

CREATE FUNCTION aoi_rollup_classes_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_LOCK}
    INSERT INTO rollup_classes_daily AS r
        (day, class_name, model_version, images, regions, area_pixels)
    SELECT aoi_utc_day(i.timestamp), n.class_name, coalesce(l.model_version, ''), count(*),
           sum(n.total_regions), sum(n.total_area_pixels)
    FROM new_rows n JOIN images i ON i.img_unique_id = n.img_unique_id
    LEFT JOIN inspections l ON l.img_unique_id = n.img_unique_id
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (day, class_name, model_version) DO UPDATE SET
        images = r.images + EXCLUDED.images,
        regions = r.regions + EXCLUDED.regions,
        area_pixels = r.area_pixels + EXCLUDED.area_pixels;
    -- Images whose first class with regions arrived in this statement.
    UPDATE rollup_images_daily r SET images_with_defects = r.images_with_defects + g.n
    FROM (
        SELECT aoi_utc_day(i.timestamp) AS day, coalesce(l.model_version, '') AS version,
               count(*) AS n
        FROM images i LEFT JOIN inspections l ON l.img_unique_id = i.img_unique_id
        WHERE i.img_unique_id IN (SELECT img_unique_id FROM new_rows WHERE total_regions > 0)
          AND NOT EXISTS (
              SELECT 1 FROM classes c
              WHERE c.img_unique_id = i.img_unique_id AND c.total_regions > 0
                AND NOT EXISTS (SELECT 1 FROM new_rows x
                                WHERE x.class_unique_id = c.class_unique_id))
        GROUP BY 1, 2
    ) g
    WHERE r.day = g.day AND r.model_version = g.version;
    RETURN NULL;
END $$;

-- The images and classes of the statement's regions are looked up by primary key first
-- (`= ANY(ARRAY(...))`: an index scan whatever the table sizes); joined to the thousands of
-- region rows directly, the planner would merge-join whole indexes of images, classes and
-- inspections (a cost growing with the tables: ~50 ms per COPY at 100,000 images).
CREATE FUNCTION aoi_rollup_regions_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_LOCK}
    WITH images_of AS MATERIALIZED (
        SELECT i.img_unique_id, aoi_utc_day(i.timestamp) AS day, i.image_height,
               i.image_width, coalesce(l.model_version, '') AS version
        FROM images i LEFT JOIN inspections l ON l.img_unique_id = i.img_unique_id
        WHERE i.img_unique_id = ANY (ARRAY(SELECT DISTINCT img_unique_id FROM new_rows))
    ), classes_of AS MATERIALIZED (
        SELECT c.class_unique_id, c.class_name FROM classes c
        WHERE c.class_unique_id = ANY (ARRAY(SELECT DISTINCT class_unique_id FROM new_rows))
    ), cells AS (
        SELECT c.class_name, i.day,
               aoi_heat_cell(n.centroid_y, i.image_height) AS cell_row,
               aoi_heat_cell(n.centroid_x, i.image_width) AS cell_col,
               i.version, count(*) AS n
        FROM new_rows n
        JOIN classes_of c ON c.class_unique_id = n.class_unique_id
        JOIN images_of i ON i.img_unique_id = n.img_unique_id
        GROUP BY 1, 2, 3, 4, 5
    {_UPSERT_CELLS}
    RETURN NULL;
END $$;

CREATE FUNCTION aoi_rollup_image_deleting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM aoi_rollup_add_images(
        ARRAY[OLD.img_unique_id::text], ARRAY[aoi_image_model_version(OLD.img_unique_id)],
        ARRAY[-1]);
    RETURN OLD;
END $$;

CREATE FUNCTION aoi_rollup_class_deleting() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    image images;
    version text;
BEGIN
    SELECT * INTO image FROM images WHERE img_unique_id = OLD.img_unique_id;
    IF NOT FOUND THEN
        RETURN OLD;  -- its image's delete subtracted it already
    END IF;
    {_LOCK}
    version := aoi_image_model_version(OLD.img_unique_id);
    UPDATE rollup_classes_daily SET
        images = images - 1, regions = regions - OLD.total_regions,
        area_pixels = area_pixels - OLD.total_area_pixels
    WHERE day = aoi_utc_day(image.timestamp) AND class_name = OLD.class_name
      AND model_version = version;
    IF OLD.total_regions > 0 AND NOT EXISTS (
        SELECT 1 FROM classes WHERE img_unique_id = OLD.img_unique_id AND total_regions > 0
          AND class_unique_id <> OLD.class_unique_id
    ) THEN
        UPDATE rollup_images_daily SET images_with_defects = images_with_defects - 1
        WHERE day = aoi_utc_day(image.timestamp) AND model_version = version;
    END IF;
    UPDATE rollup_heatmap_daily r SET regions = r.regions - g.n
    FROM (
        SELECT aoi_heat_cell(g.centroid_y, image.image_height) AS cell_row,
               aoi_heat_cell(g.centroid_x, image.image_width) AS cell_col, count(*) AS n
        FROM regions g WHERE g.class_unique_id = OLD.class_unique_id
        GROUP BY 1, 2
    ) g
    WHERE r.class_name = OLD.class_name AND r.day = aoi_utc_day(image.timestamp)
      AND r.cell_row = g.cell_row AND r.cell_col = g.cell_col AND r.model_version = version;
    UPDATE rollup_heatmap_daily_all r SET regions = r.regions - g.n
    FROM (
        SELECT aoi_heat_cell(g.centroid_y, image.image_height) AS cell_row,
               aoi_heat_cell(g.centroid_x, image.image_width) AS cell_col, count(*) AS n
        FROM regions g WHERE g.class_unique_id = OLD.class_unique_id
        GROUP BY 1, 2
    ) g
    WHERE r.day = aoi_utc_day(image.timestamp) AND r.cell_row = g.cell_row
      AND r.cell_col = g.cell_col AND r.model_version = version;
    RETURN OLD;
END $$;

CREATE FUNCTION aoi_rollup_region_deleting() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    image images;
    name varchar(128);
    version text;
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
    version := aoi_image_model_version(OLD.img_unique_id);
    cell_r := aoi_heat_cell(OLD.centroid_y, image.image_height);
    cell_c := aoi_heat_cell(OLD.centroid_x, image.image_width);
    UPDATE rollup_heatmap_daily SET regions = regions - 1
    WHERE class_name = name AND day = aoi_utc_day(image.timestamp)
      AND cell_row = cell_r AND cell_col = cell_c AND model_version = version;
    UPDATE rollup_heatmap_daily_all SET regions = regions - 1
    WHERE day = aoi_utc_day(image.timestamp) AND cell_row = cell_r AND cell_col = cell_c
      AND model_version = version;
    RETURN OLD;
END $$;
"""

# Per inspections event: (sign, created_at, version, timings) of the `succeeded` rows.
_TIMING_ROWS = {
    "insert": "SELECT 1, n.created_at, coalesce(n.model_version, ''), n.model_service_seconds,"
    " n.total_seconds FROM new_rows n WHERE n.status = 'succeeded'",
    "update": "SELECT 1, n.created_at, coalesce(n.model_version, ''), n.model_service_seconds,"
    " n.total_seconds FROM new_rows n WHERE n.status = 'succeeded' UNION ALL"
    " SELECT -1, o.created_at, coalesce(o.model_version, ''), o.model_service_seconds,"
    " o.total_seconds FROM old_rows o WHERE o.status = 'succeeded'",
    "delete": "SELECT -1, o.created_at, coalesce(o.model_version, ''), o.model_service_seconds,"
    " o.total_seconds FROM old_rows o WHERE o.status = 'succeeded'",
}
# Per inspections event: (image id, version, sign): a ledger row that appears moves its
# image from '' to its version, one that goes moves it back.
_VERSION_ROWS = {
    "insert": "SELECT n.img_unique_id, coalesce(n.model_version, ''), 1 FROM new_rows n"
    " UNION ALL SELECT n.img_unique_id, '', -1 FROM new_rows n",
    "update": "SELECT n.img_unique_id, coalesce(n.model_version, ''), 1 FROM new_rows n"
    " UNION ALL SELECT n.img_unique_id, '', -1 FROM new_rows n"
    " UNION ALL SELECT o.img_unique_id, coalesce(o.model_version, ''), -1 FROM old_rows o"
    " UNION ALL SELECT o.img_unique_id, '', 1 FROM old_rows o",
    "delete": "SELECT o.img_unique_id, coalesce(o.model_version, ''), -1 FROM old_rows o"
    " UNION ALL SELECT o.img_unique_id, '', 1 FROM old_rows o",
}
_REFERENCING = {
    "insert": "NEW TABLE AS new_rows",
    "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "delete": "OLD TABLE AS old_rows",
}


def _timing_function(event: str) -> str:
    """As in 0011, keyed by the ledger row's model version too."""
    rows = _TIMING_ROWS[event]
    return f"""
CREATE FUNCTION aoi_rollup_timings_{event}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS ({rows}) THEN
        RETURN NULL;
    END IF;
    {_LOCK}
    INSERT INTO rollup_timings_daily AS r (day, model_version, succeeded, model_service_n,
                                           model_service_seconds, total_n, total_seconds)
    SELECT aoi_utc_day(t.created_at), t.version, sum(t.sign),
           sum(t.sign * (t.model_service_seconds IS NOT NULL)::int),
           coalesce(sum(t.sign * t.model_service_seconds), 0),
           sum(t.sign * (t.total_seconds IS NOT NULL)::int),
           coalesce(sum(t.sign * t.total_seconds), 0)
    FROM ({rows}) AS t(sign, created_at, version, model_service_seconds, total_seconds)
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (day, model_version) DO UPDATE SET
        succeeded = r.succeeded + EXCLUDED.succeeded,
        model_service_n = r.model_service_n + EXCLUDED.model_service_n,
        model_service_seconds = r.model_service_seconds + EXCLUDED.model_service_seconds,
        total_n = r.total_n + EXCLUDED.total_n,
        total_seconds = r.total_seconds + EXCLUDED.total_seconds;
    RETURN NULL;
END $$;
"""


def _version_function(event: str) -> str:
    """The trigger function moving stored images whose ledger row's version the statement
    changed (inserted, updated, deleted) to their new version. The moves are netted per
    (image, version) before any image is looked up, so a statement that changes no
    version looks up nothing and takes no lock."""
    return f"""
CREATE FUNCTION aoi_rollup_versions_{event}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids text[];
    versions text[];
    signs integer[];
BEGIN
    SELECT array_agg(t.id), array_agg(t.version), array_agg(t.sign)
    INTO ids, versions, signs
    FROM (
        SELECT s.id, s.version, sum(s.sign)::int AS sign
        FROM ({_VERSION_ROWS[event]}) AS s(id, version, sign)
        GROUP BY 1, 2 HAVING sum(s.sign) <> 0
    ) t
    WHERE EXISTS (SELECT 1 FROM images i WHERE i.img_unique_id = t.id);
    IF ids IS NOT NULL THEN
        PERFORM aoi_rollup_add_images(ids, versions, signs);
    END IF;
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
    INSERT INTO rollup_images_daily
        (day, model_version, images, images_with_defects, processing_seconds)
    SELECT aoi_utc_day(i.timestamp), coalesce(l.model_version, ''), count(*),
           count(*) FILTER (WHERE EXISTS (SELECT 1 FROM classes c
                            WHERE c.img_unique_id = i.img_unique_id AND c.total_regions > 0)),
           sum(i.processing_time_seconds)
    FROM images i LEFT JOIN inspections l ON l.img_unique_id = i.img_unique_id
    GROUP BY 1, 2;
    INSERT INTO rollup_classes_daily
        (day, class_name, model_version, images, regions, area_pixels)
    SELECT aoi_utc_day(i.timestamp), c.class_name, coalesce(l.model_version, ''), count(*),
           sum(c.total_regions), sum(c.total_area_pixels)
    FROM classes c JOIN images i ON i.img_unique_id = c.img_unique_id
    LEFT JOIN inspections l ON l.img_unique_id = c.img_unique_id
    GROUP BY 1, 2, 3;
    INSERT INTO rollup_heatmap_daily (class_name, day, cell_row, cell_col, model_version, regions)
    SELECT c.class_name, aoi_utc_day(i.timestamp), aoi_heat_cell(g.centroid_y, i.image_height),
           aoi_heat_cell(g.centroid_x, i.image_width), coalesce(l.model_version, ''), count(*)
    FROM regions g
    JOIN classes c ON c.class_unique_id = g.class_unique_id
    JOIN images i ON i.img_unique_id = g.img_unique_id
    LEFT JOIN inspections l ON l.img_unique_id = g.img_unique_id
    GROUP BY 1, 2, 3, 4, 5;
    INSERT INTO rollup_heatmap_daily_all (day, cell_row, cell_col, model_version, regions)
    SELECT day, cell_row, cell_col, model_version, sum(regions) FROM rollup_heatmap_daily
    GROUP BY 1, 2, 3, 4;
    INSERT INTO rollup_timings_daily (day, model_version, succeeded, model_service_n,
                                      model_service_seconds, total_n, total_seconds)
    SELECT aoi_utc_day(created_at), coalesce(model_version, ''), count(*),
           count(model_service_seconds), coalesce(sum(model_service_seconds), 0),
           count(total_seconds), coalesce(sum(total_seconds), 0)
    FROM inspections WHERE status = 'succeeded' GROUP BY 1, 2;
END $$;
"""

_EVENTS = ("insert", "update", "delete")
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
        (f"aoi_rollup_{kind}_{event}", "inspections", f"AFTER {event.upper()}",
         _REFERENCING[event], "STATEMENT", f"aoi_rollup_{kind}_{event}")
        for kind in ("timings", "versions")
        for event in _EVENTS
    ],
]  # fmt: skip

_DROP_FUNCTIONS = [
    "aoi_rollups_rebuild()",
    *[f"aoi_rollup_{kind}_{event}()" for kind in ("timings", "versions") for event in _EVENTS],
    "aoi_rollup_region_deleting()",
    "aoi_rollup_class_deleting()",
    "aoi_rollup_image_deleting()",
    "aoi_rollup_regions_inserted()",
    "aoi_rollup_classes_inserted()",
    "aoi_rollup_images_inserted()",
    "aoi_rollup_add_images(text[], text[], integer[])",
    "aoi_image_model_version(text)",
]


def _create_triggers(triggers: Sequence[tuple[str, str, str, str | None, str, str]]) -> None:
    for name, table, when, referencing, level, function in triggers:
        refs = f" REFERENCING {referencing}" if referencing else ""
        op.execute(
            f"CREATE TRIGGER {name} {when} ON {table}{refs} FOR EACH {level}"
            f" EXECUTE FUNCTION {function}()"
        )


def upgrade() -> None:
    previous = _previous()
    for name, table, *_ in previous._TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON {table}")
    # aoi_utc_day and aoi_heat_cell stay (the last two of 0011's list).
    for function in previous._DROP_FUNCTIONS[:-2]:
        op.execute(f"DROP FUNCTION {function}")
    _drop_tables()
    _create_tables(by_version=True)
    op.execute(_FUNCTIONS)
    for event in _EVENTS:
        op.execute(_timing_function(event))
        op.execute(_version_function(event))
    op.execute(_REBUILD)
    _create_triggers(_TRIGGERS)
    op.execute("SELECT aoi_rollups_rebuild()")


def downgrade() -> None:
    previous = _previous()
    for name, table, *_ in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON {table}")
    for function in _DROP_FUNCTIONS:
        op.execute(f"DROP FUNCTION {function}")
    _drop_tables()
    _create_tables(by_version=False)
    # 0011's functions but the two kept above, which it creates first.
    functions = previous._FUNCTIONS
    start = functions.index("CREATE FUNCTION aoi_rollup_images_inserted()")
    op.execute(functions[start:])
    for event in _EVENTS:
        op.execute(previous._timing_function(event))
    op.execute(previous._REBUILD)
    _create_triggers(previous._TRIGGERS)
    op.execute("SELECT aoi_rollups_rebuild()")

"""The comparison of two model versions by kept counts, and overlapping regions.

`compare_counts`: one row per (image, answer, defect class) — `answer_id` 0 the primary
answer, else a stored shadow/replay answer — with the answer's calls of the class and
their verdicts, and for a stored answer what it shares with the image's primary answer:
matched regions, its unmatched regions overlapping a same-class primary region, the
primary regions overlapping one of its regions without a match (each also counted
`real`). Triggers keep it: on `classes` (the primary's calls, inserted once), on
`region_verdicts` (a verdict counts for the primary region, for every stored region
matched to it, and where the region overlaps a stored answer), on `answer_regions` and
on `primary_overlaps`. Rows go with their image (ON DELETE CASCADE). A comparison then
sums a few rows per image instead of joining every region with its verdict
(docs/models.md, docs/benchmarks.md "Model comparison").

The triggers that read a verdict to count it and those that count a changed verdict take
a transaction-scoped advisory lock per image (first key 0x414F43, "AOC"; the second the
image id's hashtext), so a verdict written while an answer of the same image is being
stored is counted once, whichever commits first.

`answer_regions.overlap_region_unique_id` (an unmatched region's overlapping primary
region), `primary_overlaps` (a primary region overlapping a region of a stored answer
without a match) and `model_answers.overlapping_count` / `primary_overlapping_count` hold
the new matching rule's "same defect, different extent". Answers stored before this
migration get them from their bounding boxes (same class, boxes intersect: their masks
are not read here); new answers from their masks (app.services.models.matching).
`aoi_compare_counts_rebuild()` recomputes the counts from the rows (run here).

Revision ID: 20261208_0028
Revises: 20261208_0029
Create Date: 2026-12-08 00:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261208_0028"
down_revision: str | None = "20261208_0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The overlaps of answers stored before this migration, by bounding boxes (the rule's
# fallback when a region's pixels are unknown).
_BACKFILL = """
UPDATE answer_regions ar SET overlap_region_unique_id = o.region_unique_id
FROM (
    SELECT DISTINCT ON (ar.answer_region_id) ar.answer_region_id, r.region_unique_id
    FROM answer_regions ar
    JOIN model_answers ma ON ma.answer_id = ar.answer_id
    JOIN regions r ON r.img_unique_id = ma.img_unique_id
    JOIN classes c ON c.class_unique_id = r.class_unique_id AND c.class_name = ar.class_name
    CROSS JOIN LATERAL (
        SELECT greatest(0, least(ar.bbox_x + ar.bbox_width, r.bbox_x + r.bbox_width)
                           - greatest(ar.bbox_x, r.bbox_x))
             * greatest(0, least(ar.bbox_y + ar.bbox_height, r.bbox_y + r.bbox_height)
                           - greatest(ar.bbox_y, r.bbox_y)) AS inter
    ) i
    WHERE ar.matched_region_unique_id IS NULL AND i.inter > 0
    ORDER BY ar.answer_region_id,
             i.inter::float8 / nullif(ar.bbox_width * ar.bbox_height
                                      + r.bbox_width * r.bbox_height - i.inter, 0) DESC,
             r.region_unique_id
) o
WHERE ar.answer_region_id = o.answer_region_id;

INSERT INTO primary_overlaps (answer_id, region_unique_id)
SELECT DISTINCT ar.answer_id, r.region_unique_id
FROM answer_regions ar
JOIN model_answers ma ON ma.answer_id = ar.answer_id
JOIN regions r ON r.img_unique_id = ma.img_unique_id
JOIN classes c ON c.class_unique_id = r.class_unique_id AND c.class_name = ar.class_name
WHERE least(ar.bbox_x + ar.bbox_width, r.bbox_x + r.bbox_width) > greatest(ar.bbox_x, r.bbox_x)
  AND least(ar.bbox_y + ar.bbox_height, r.bbox_y + r.bbox_height) > greatest(ar.bbox_y, r.bbox_y)
  AND NOT EXISTS (SELECT 1 FROM answer_regions m
                  WHERE m.answer_id = ar.answer_id
                    AND m.matched_region_unique_id = r.region_unique_id);

UPDATE model_answers ma SET
    overlapping_count = (SELECT count(*) FROM answer_regions ar
                         WHERE ar.answer_id = ma.answer_id
                           AND ar.matched_region_unique_id IS NULL
                           AND ar.overlap_region_unique_id IS NOT NULL),
    primary_overlapping_count = (SELECT count(*) FROM primary_overlaps po
                                 WHERE po.answer_id = ma.answer_id)
WHERE ma.status = 'succeeded';
"""

_FUNCTIONS = """
CREATE FUNCTION aoi_compare_lock(board varchar) RETURNS void LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(4280131, hashtext(board))
$$;

-- Add `d` (calls, real, false_call, unsure, matched, matched_real, overlapping,
-- overlapping_real, primary_overlapping, primary_overlapping_real) times `sign` to a row;
-- a positive change makes the row when missing, a negative one never does (the image may
-- be going: its row is then gone or going).
CREATE FUNCTION aoi_compare_add(board varchar, answer bigint, class varchar, d int[],
                                sign int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF class IS NULL OR board IS NULL THEN
        RETURN;
    END IF;
    IF sign > 0 THEN
        INSERT INTO compare_counts AS cc (img_unique_id, answer_id, class_name, calls, real,
            false_call, unsure, matched, matched_real, overlapping, overlapping_real,
            primary_overlapping, primary_overlapping_real)
        VALUES (board, answer, class, d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9],
                d[10])
        ON CONFLICT (img_unique_id, answer_id, class_name) DO UPDATE SET
            calls = cc.calls + d[1], real = cc.real + d[2],
            false_call = cc.false_call + d[3], unsure = cc.unsure + d[4],
            matched = cc.matched + d[5], matched_real = cc.matched_real + d[6],
            overlapping = cc.overlapping + d[7], overlapping_real = cc.overlapping_real + d[8],
            primary_overlapping = cc.primary_overlapping + d[9],
            primary_overlapping_real = cc.primary_overlapping_real + d[10];
    ELSE
        UPDATE compare_counts SET
            calls = calls - d[1], real = real - d[2], false_call = false_call - d[3],
            unsure = unsure - d[4], matched = matched - d[5],
            matched_real = matched_real - d[6], overlapping = overlapping - d[7],
            overlapping_real = overlapping_real - d[8],
            primary_overlapping = primary_overlapping - d[9],
            primary_overlapping_real = primary_overlapping_real - d[10]
        WHERE img_unique_id = board AND answer_id = answer AND class_name = class;
    END IF;
END $$;

-- What one answer region counts: its verdict is its primary region's when matched.
CREATE FUNCTION aoi_compare_answer_region(r answer_regions) RETURNS int[]
LANGUAGE plpgsql AS $$
DECLARE
    v varchar;
    overlapping boolean := r.matched_region_unique_id IS NULL
                           AND r.overlap_region_unique_id IS NOT NULL;
BEGIN
    IF r.matched_region_unique_id IS NULL THEN
        v := r.verdict;
    ELSE
        SELECT verdict INTO v FROM region_verdicts
        WHERE region_unique_id = r.matched_region_unique_id;
    END IF;
    RETURN ARRAY[1, (v IS NOT DISTINCT FROM 'real')::int,
                 (v IS NOT DISTINCT FROM 'false_call')::int,
                 (v IS NOT DISTINCT FROM 'unsure')::int,
                 (r.matched_region_unique_id IS NOT NULL)::int,
                 (r.matched_region_unique_id IS NOT NULL AND v IS NOT DISTINCT FROM 'real')::int,
                 overlapping::int, (overlapping AND v IS NOT DISTINCT FROM 'real')::int, 0, 0];
END $$;

CREATE FUNCTION aoi_compare_answer_regions() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    board varchar;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        SELECT img_unique_id INTO board FROM model_answers WHERE answer_id = OLD.answer_id;
        IF board IS NOT NULL THEN
            PERFORM aoi_compare_lock(board);
            PERFORM aoi_compare_add(board, OLD.answer_id, OLD.class_name,
                                    aoi_compare_answer_region(OLD), -1);
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        SELECT img_unique_id INTO board FROM model_answers WHERE answer_id = NEW.answer_id;
        PERFORM aoi_compare_lock(board);
        PERFORM aoi_compare_add(board, NEW.answer_id, NEW.class_name,
                                aoi_compare_answer_region(NEW), 1);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION aoi_compare_primary_overlaps() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    o primary_overlaps;
    board varchar;
    class varchar;
    v varchar;
BEGIN
    IF TG_OP = 'DELETE' THEN
        o := OLD;
    ELSE
        o := NEW;
    END IF;
    SELECT img_unique_id INTO board FROM model_answers WHERE answer_id = o.answer_id;
    IF board IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM aoi_compare_lock(board);
    SELECT c.class_name INTO class FROM regions r
    JOIN classes c ON c.class_unique_id = r.class_unique_id
    WHERE r.region_unique_id = o.region_unique_id;
    SELECT verdict INTO v FROM region_verdicts WHERE region_unique_id = o.region_unique_id;
    PERFORM aoi_compare_add(board, o.answer_id, class,
        ARRAY[0, 0, 0, 0, 0, 0, 0, 0, 1, (v IS NOT DISTINCT FROM 'real')::int],
        CASE WHEN TG_OP = 'DELETE' THEN -1 ELSE 1 END);
    RETURN NULL;
END $$;

CREATE FUNCTION aoi_compare_verdicts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    region bigint;
    board varchar;
    class varchar;
    old_v varchar;
    new_v varchar;
    dr int;
    df int;
    du int;
BEGIN
    IF TG_OP = 'DELETE' THEN
        region := OLD.region_unique_id;
        board := OLD.img_unique_id;
    ELSE
        region := NEW.region_unique_id;
        board := NEW.img_unique_id;
        new_v := NEW.verdict;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        old_v := OLD.verdict;
    END IF;
    IF old_v IS NOT DISTINCT FROM new_v THEN
        RETURN NULL;
    END IF;
    dr := (new_v IS NOT DISTINCT FROM 'real')::int - (old_v IS NOT DISTINCT FROM 'real')::int;
    df := (new_v IS NOT DISTINCT FROM 'false_call')::int
          - (old_v IS NOT DISTINCT FROM 'false_call')::int;
    du := (new_v IS NOT DISTINCT FROM 'unsure')::int - (old_v IS NOT DISTINCT FROM 'unsure')::int;
    PERFORM aoi_compare_lock(board);
    SELECT c.class_name INTO class FROM regions r
    JOIN classes c ON c.class_unique_id = r.class_unique_id
    WHERE r.region_unique_id = region;
    IF class IS NULL THEN  -- the image is being deleted
        RETURN NULL;
    END IF;
    UPDATE compare_counts SET real = real + dr, false_call = false_call + df,
        unsure = unsure + du
    WHERE img_unique_id = board AND answer_id = 0 AND class_name = class;
    -- One stored region per answer matches a primary region (one-to-one matching).
    UPDATE compare_counts cc SET real = cc.real + dr, false_call = cc.false_call + df,
        unsure = cc.unsure + du, matched_real = cc.matched_real + dr
    FROM answer_regions ar
    WHERE ar.matched_region_unique_id = region AND cc.img_unique_id = board
      AND cc.answer_id = ar.answer_id AND cc.class_name = ar.class_name;
    IF dr <> 0 THEN
        UPDATE compare_counts cc
        SET primary_overlapping_real = cc.primary_overlapping_real + dr
        FROM primary_overlaps po
        WHERE po.region_unique_id = region AND cc.img_unique_id = board
          AND cc.answer_id = po.answer_id AND cc.class_name = class;
    END IF;
    RETURN NULL;
END $$;

-- The primary answer's calls: `classes` rows are inserted once per image, never changed.
CREATE FUNCTION aoi_compare_classes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO compare_counts AS cc (img_unique_id, answer_id, class_name, calls)
    SELECT img_unique_id, 0, class_name, sum(total_regions)
    FROM new_classes GROUP BY img_unique_id, class_name
    ON CONFLICT (img_unique_id, answer_id, class_name)
    DO UPDATE SET calls = cc.calls + EXCLUDED.calls;
    RETURN NULL;
END $$;

CREATE FUNCTION aoi_compare_counts_rebuild() RETURNS void LANGUAGE sql AS $$
    DELETE FROM compare_counts;
    INSERT INTO compare_counts (img_unique_id, answer_id, class_name, calls, real,
        false_call, unsure, matched, matched_real, overlapping, overlapping_real,
        primary_overlapping, primary_overlapping_real)
    SELECT img_unique_id, answer_id, class_name, sum(calls), sum(real), sum(false_call),
           sum(unsure), sum(matched), sum(matched_real), sum(overlapping),
           sum(overlapping_real), sum(primary_overlapping), sum(primary_overlapping_real)
    FROM (
        SELECT c.img_unique_id, 0::bigint AS answer_id, c.class_name,
               c.total_regions AS calls, 0 AS real, 0 AS false_call, 0 AS unsure,
               0 AS matched, 0 AS matched_real, 0 AS overlapping, 0 AS overlapping_real,
               0 AS primary_overlapping, 0 AS primary_overlapping_real
        FROM classes c
        UNION ALL
        SELECT rv.img_unique_id, 0, c.class_name, 0, (rv.verdict = 'real')::int,
               (rv.verdict = 'false_call')::int, (rv.verdict = 'unsure')::int,
               0, 0, 0, 0, 0, 0
        FROM region_verdicts rv
        JOIN regions r ON r.region_unique_id = rv.region_unique_id
        JOIN classes c ON c.class_unique_id = r.class_unique_id
        UNION ALL
        SELECT ma.img_unique_id, ar.answer_id, ar.class_name, 1,
               (v.verdict IS NOT DISTINCT FROM 'real')::int,
               (v.verdict IS NOT DISTINCT FROM 'false_call')::int,
               (v.verdict IS NOT DISTINCT FROM 'unsure')::int,
               (ar.matched_region_unique_id IS NOT NULL)::int,
               (ar.matched_region_unique_id IS NOT NULL
                AND v.verdict IS NOT DISTINCT FROM 'real')::int,
               v.overlapping::int, (v.overlapping AND v.verdict IS NOT DISTINCT FROM 'real')::int,
               0, 0
        FROM answer_regions ar
        JOIN model_answers ma ON ma.answer_id = ar.answer_id
        LEFT JOIN region_verdicts rv ON rv.region_unique_id = ar.matched_region_unique_id
        CROSS JOIN LATERAL (
            SELECT CASE WHEN ar.matched_region_unique_id IS NULL THEN ar.verdict
                        ELSE rv.verdict END AS verdict,
                   ar.matched_region_unique_id IS NULL
                   AND ar.overlap_region_unique_id IS NOT NULL AS overlapping
        ) v
        UNION ALL
        SELECT ma.img_unique_id, po.answer_id, c.class_name, 0, 0, 0, 0, 0, 0, 0, 0, 1,
               (rv.verdict IS NOT DISTINCT FROM 'real')::int
        FROM primary_overlaps po
        JOIN model_answers ma ON ma.answer_id = po.answer_id
        JOIN regions r ON r.region_unique_id = po.region_unique_id
        JOIN classes c ON c.class_unique_id = r.class_unique_id
        LEFT JOIN region_verdicts rv ON rv.region_unique_id = po.region_unique_id
    ) counts
    GROUP BY img_unique_id, answer_id, class_name;
$$;

CREATE TRIGGER aoi_compare_classes AFTER INSERT ON classes
REFERENCING NEW TABLE AS new_classes
FOR EACH STATEMENT EXECUTE FUNCTION aoi_compare_classes();

CREATE TRIGGER aoi_compare_verdicts AFTER INSERT OR UPDATE OF verdict OR DELETE
ON region_verdicts FOR EACH ROW EXECUTE FUNCTION aoi_compare_verdicts();

CREATE TRIGGER aoi_compare_answer_regions
AFTER INSERT OR DELETE OR UPDATE OF answer_id, class_name, verdict, matched_region_unique_id,
    overlap_region_unique_id
ON answer_regions FOR EACH ROW EXECUTE FUNCTION aoi_compare_answer_regions();

CREATE TRIGGER aoi_compare_primary_overlaps AFTER INSERT OR DELETE ON primary_overlaps
FOR EACH ROW EXECUTE FUNCTION aoi_compare_primary_overlaps();
"""

_TRIGGERS = (
    ("aoi_compare_classes", "classes"),
    ("aoi_compare_verdicts", "region_verdicts"),
    ("aoi_compare_answer_regions", "answer_regions"),
    ("aoi_compare_primary_overlaps", "primary_overlaps"),
)
_DROP_FUNCTIONS = (
    "aoi_compare_counts_rebuild()",
    "aoi_compare_classes()",
    "aoi_compare_verdicts()",
    "aoi_compare_primary_overlaps()",
    "aoi_compare_answer_regions()",
    "aoi_compare_answer_region(answer_regions)",
    "aoi_compare_add(varchar, bigint, varchar, int[], int)",
    "aoi_compare_lock(varchar)",
)


def upgrade() -> None:
    op.add_column("model_answers", sa.Column("overlapping_count", sa.Integer(), nullable=True))
    op.add_column(
        "model_answers", sa.Column("primary_overlapping_count", sa.Integer(), nullable=True)
    )
    op.add_column(
        "answer_regions", sa.Column("overlap_region_unique_id", sa.BigInteger(), nullable=True)
    )
    op.create_foreign_key(
        op.f("fk_answer_regions_overlap_region_unique_id_regions"),
        "answer_regions",
        "regions",
        ["overlap_region_unique_id"],
        ["region_unique_id"],
        ondelete="SET NULL",
    )
    op.create_index(
        op.f("ix_answer_regions_overlap_region_unique_id"),
        "answer_regions",
        ["overlap_region_unique_id"],
    )
    op.create_table(
        "primary_overlaps",
        sa.Column("answer_id", sa.BigInteger(), nullable=False),
        sa.Column("region_unique_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["answer_id"],
            ["model_answers.answer_id"],
            name=op.f("fk_primary_overlaps_answer_id_model_answers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["region_unique_id"],
            ["regions.region_unique_id"],
            name=op.f("fk_primary_overlaps_region_unique_id_regions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("answer_id", "region_unique_id", name=op.f("pk_primary_overlaps")),
    )
    op.create_index(
        op.f("ix_primary_overlaps_region_unique_id"), "primary_overlaps", ["region_unique_id"]
    )
    counts = [
        sa.Column(name, sa.Integer(), server_default="0", nullable=False)
        for name in (
            "calls",
            "real",
            "false_call",
            "unsure",
            "matched",
            "matched_real",
            "overlapping",
            "overlapping_real",
            "primary_overlapping",
            "primary_overlapping_real",
        )
    ]
    op.create_table(
        "compare_counts",
        sa.Column("img_unique_id", sa.String(length=22), nullable=False),
        sa.Column("answer_id", sa.BigInteger(), nullable=False),
        sa.Column("class_name", sa.String(length=128), nullable=False),
        *counts,
        sa.ForeignKeyConstraint(
            ["img_unique_id"],
            ["images.img_unique_id"],
            name=op.f("fk_compare_counts_img_unique_id_images"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "img_unique_id", "answer_id", "class_name", name=op.f("pk_compare_counts")
        ),
    )
    op.execute(_BACKFILL)
    op.execute(_FUNCTIONS)
    op.execute("SELECT aoi_compare_counts_rebuild()")


def downgrade() -> None:
    for trigger, table in _TRIGGERS:
        op.execute(f"DROP TRIGGER {trigger} ON {table}")
    for function in _DROP_FUNCTIONS:
        op.execute(f"DROP FUNCTION {function}")
    op.drop_table("compare_counts")
    op.drop_table("primary_overlaps")
    op.drop_index(op.f("ix_answer_regions_overlap_region_unique_id"), table_name="answer_regions")
    op.drop_constraint(
        op.f("fk_answer_regions_overlap_region_unique_id_regions"),
        "answer_regions",
        type_="foreignkey",
    )
    op.drop_column("answer_regions", "overlap_region_unique_id")
    op.drop_column("model_answers", "primary_overlapping_count")
    op.drop_column("model_answers", "overlapping_count")

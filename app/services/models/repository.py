"""Queries of the model answers (`model_answers`, `answer_regions`): the answers of model
services other than the primary one, and what the comparison reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, exists, insert, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.database import (
    AnswerRegion,
    DefectClass,
    Image,
    Inspection,
    ModelAnswer,
    PrimaryOverlap,
    Region,
)
from app.services.boards.repository import ContextFilter
from app.services.database.queries import day_end, day_start
from app.utils.ids import utc_now


@dataclass(frozen=True)
class StoredInput:
    """What a model answer needs of a stored inspection: its input and its image row.

    Attributes:
        image: the `images` row (size in pixels, primary mask key, `timestamp`).
        input_key: the stored input image's key.
        filename: the client's file name (passed to the model service).
        media_type: the input's media type.
    """

    image: Image
    input_key: str
    filename: str
    media_type: str


@dataclass(frozen=True)
class PrimaryRegion:
    """A region of the primary answer: its id, class and geometry (pixels)."""

    region_unique_id: int
    class_name: str
    x: int
    y: int
    width: int
    height: int
    area_pixels: int


class ModelAnswerRepository:
    """Reads and writes model answers within one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def stored_input(self, img_unique_id: str) -> StoredInput | None:
        """The stored inspection of `img_unique_id`, or None when it has no result (not
        inspected, failed, or deleted)."""
        row = (
            await self.session.execute(
                select(Image, Inspection.original_filename, Inspection.media_type)
                .outerjoin(Inspection, Inspection.img_unique_id == Image.img_unique_id)
                .where(Image.img_unique_id == img_unique_id)
            )
        ).one_or_none()
        if row is None:
            return None
        image, filename, media_type = row
        return StoredInput(
            image=image,
            input_key=image.input_image_path,
            filename=filename or f"{img_unique_id}.png",
            media_type=media_type or "application/octet-stream",
        )

    async def primary_regions(self, img_unique_id: str) -> list[PrimaryRegion]:
        """The primary answer's regions of one image, by class then region id."""
        rows = await self.session.execute(
            select(
                Region.region_unique_id,
                DefectClass.class_name,
                Region.bbox_x,
                Region.bbox_y,
                Region.bbox_width,
                Region.bbox_height,
                Region.area_pixels,
            )
            .join(DefectClass, DefectClass.class_unique_id == Region.class_unique_id)
            .where(Region.img_unique_id == img_unique_id)
            .order_by(DefectClass.class_name, Region.region_id)
        )
        return [PrimaryRegion(*row) for row in rows]

    async def add(
        self,
        answer: ModelAnswer,
        regions: Sequence[dict[str, object]],
        primary_overlaps: Sequence[int] = (),
    ) -> int:
        """Insert an answer, its regions (column values by name, without `answer_id`) and
        the primary regions (`region_unique_id`) that overlap one of them without a match;
        returns the new `answer_id`. The comparison's counts (`compare_counts`) follow by
        trigger, in this transaction."""
        self.session.add(answer)
        await self.session.flush()
        if regions:
            await self.session.execute(
                insert(AnswerRegion), [{**r, "answer_id": answer.answer_id} for r in regions]
            )
        if primary_overlaps:
            await self.session.execute(
                insert(PrimaryOverlap),
                [{"answer_id": answer.answer_id, "region_unique_id": r} for r in primary_overlaps],
            )
        return answer.answer_id

    async def get(self, answer_id: int) -> ModelAnswer | None:
        """One answer, or None."""
        return await self.session.get(ModelAnswer, answer_id)

    async def region(
        self, answer_region_id: int, *, for_update: bool = False
    ) -> AnswerRegion | None:
        """One answer region, or None (locked until commit with `for_update`)."""
        stmt = select(AnswerRegion).where(AnswerRegion.answer_region_id == answer_region_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def set_verdict(
        self, region: AnswerRegion, verdict: str | None, reviewer: str, reason: str | None = None
    ) -> None:
        """Set (None: withdraw) a reviewer's verdict, with its reason code, on an answer
        region (flushed)."""
        region.verdict = verdict
        region.reason = reason if verdict is not None else None
        region.reviewer = reviewer if verdict is not None else None
        region.reviewed_at = utc_now() if verdict is not None else None
        await self.session.flush()

    async def regions(self, answer_id: int) -> list[AnswerRegion]:
        """The regions of one answer, by class then region id."""
        rows = await self.session.scalars(
            select(AnswerRegion)
            .where(AnswerRegion.answer_id == answer_id)
            .order_by(AnswerRegion.class_name, AnswerRegion.region_id)
        )
        return list(rows)


def disagrees(img_unique_id: Any, model_version: str) -> ColumnElement[bool]:
    """Images (`img_unique_id`: the column naming them) on which a succeeded answer of
    `model_version` (shadow or replay) disagrees with the primary answer: it has a region
    that matches no primary region, or a primary region matches none of its regions
    (the counts kept on `model_answers` when it was stored)."""
    return exists().where(
        ModelAnswer.img_unique_id == img_unique_id,
        ModelAnswer.model_version == model_version,
        ModelAnswer.status == "succeeded",
        or_(
            ModelAnswer.region_count > ModelAnswer.matched_count,
            ModelAnswer.primary_region_count > ModelAnswer.matched_count,
        ),
    )


@dataclass(frozen=True)
class CompareFilters:
    """Which inspections a comparison looks at: image days (inclusive, UTC), batch, and
    the board context (product, line, lot...; None: any)."""

    start_date: date | None = None
    end_date: date | None = None
    batch_id: str | None = None
    context: ContextFilter | None = None


# The answer of each version on each image: the primary answer when the inspection was
# made by that version (`inspections.model_version`), else that version's newest
# succeeded answer in `model_answers` (shadow or replay); `a_answer`/`b_answer` NULL:
# the primary. One branch per case, each a join of base tables, so that PostgreSQL
# estimates the images in scope from the tables' statistics (a join of two UNIONs was
# estimated at 25 million rows for 100,000, and every later join planned for that). A
# stored answer brings the counts kept with it against the primary answer.
_SCOPE_SQL = """
    SELECT i.img_unique_id, NULL::bigint AS a_answer, b.answer_id AS b_answer,
           b.region_count, b.matched_count, b.primary_region_count, b.overlapping_count,
           b.primary_overlapping_count
    FROM inspections i JOIN answers_b b ON b.img_unique_id = i.img_unique_id
    WHERE i.model_version = :a AND i.status = 'succeeded' AND :a <> :b
    UNION ALL
    SELECT i.img_unique_id, a.answer_id, NULL, a.region_count, a.matched_count,
           a.primary_region_count, a.overlapping_count, a.primary_overlapping_count
    FROM inspections i JOIN answers_a a ON a.img_unique_id = i.img_unique_id
    WHERE i.model_version = :b AND i.status = 'succeeded' AND :a <> :b
    UNION ALL
    SELECT i.img_unique_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM inspections i
    WHERE i.model_version = :a AND i.status = 'succeeded' AND :a = :b
    UNION ALL
    SELECT a.img_unique_id, a.answer_id, b.answer_id, NULL, NULL, NULL, NULL, NULL
    FROM answers_a a JOIN answers_b b ON b.img_unique_id = a.img_unique_id
    WHERE NOT EXISTS (SELECT 1 FROM inspections p WHERE p.img_unique_id = a.img_unique_id
                      AND p.model_version IN (:a, :b))
"""

# The newest succeeded answer of version {v} in `model_answers` on each image.
_ANSWERS_SQL = """
    SELECT DISTINCT ON (ma.img_unique_id) ma.img_unique_id, ma.answer_id, ma.region_count,
           ma.matched_count, ma.primary_region_count,
           COALESCE(ma.overlapping_count, 0) AS overlapping_count,
           COALESCE(ma.primary_overlapping_count, 0) AS primary_overlapping_count
    FROM model_answers ma
    WHERE ma.model_version = :{v} AND ma.status = 'succeeded'
    ORDER BY ma.img_unique_id, ma.answer_id DESC
"""

# The per-class counts where one side is the primary answer, or both the same answer
# (`kept`): the rows kept by trigger in `compare_counts` (migration 20261208_0028), the
# primary's (`answer_id` 0) and the stored answer's, a few per image, in one join on the
# image (rows of other answers of the image count nowhere: the FILTERs; joining on the
# answer too made PostgreSQL expect a handful of rows and sort 300,000 to group them).
# A stored answer's row holds what it shares with the primary (matched calls, its
# overlapping calls and the primary's).
# Rows: per class, (class_name, a_calls, a_real, a_false, a_unsure, b_calls, b_real,
# b_false, b_unsure, matched, matched_real, a_overlap, a_overlap_real, b_overlap,
# b_overlap_real).
_KEPT_SQL = """
    SELECT cc.class_name,
        sum(cc.calls) FILTER (WHERE k.is_a) AS a_calls,
        sum(cc.real) FILTER (WHERE k.is_a) AS a_real,
        sum(cc.false_call) FILTER (WHERE k.is_a) AS a_false,
        sum(cc.unsure) FILTER (WHERE k.is_a) AS a_unsure,
        sum(cc.calls) FILTER (WHERE k.is_b) AS b_calls,
        sum(cc.real) FILTER (WHERE k.is_b) AS b_real,
        sum(cc.false_call) FILTER (WHERE k.is_b) AS b_false,
        sum(cc.unsure) FILTER (WHERE k.is_b) AS b_unsure,
        sum(CASE WHEN k.is_a AND k.is_b THEN cc.calls WHEN k.is_a OR k.is_b THEN cc.matched
            END) AS matched,
        sum(CASE WHEN k.is_a AND k.is_b THEN cc.real WHEN k.is_a OR k.is_b
            THEN cc.matched_real END) AS matched_real,
        sum(CASE WHEN k.is_a AND k.is_b THEN 0 WHEN k.is_a THEN cc.overlapping
                 WHEN k.is_b THEN cc.primary_overlapping END) AS a_overlap,
        sum(CASE WHEN k.is_a AND k.is_b THEN 0 WHEN k.is_a THEN cc.overlapping_real
                 WHEN k.is_b THEN cc.primary_overlapping_real END) AS a_overlap_real,
        sum(CASE WHEN k.is_a AND k.is_b THEN 0 WHEN k.is_b THEN cc.overlapping
                 WHEN k.is_a THEN cc.primary_overlapping END) AS b_overlap,
        sum(CASE WHEN k.is_a AND k.is_b THEN 0 WHEN k.is_b THEN cc.overlapping_real
                 WHEN k.is_a THEN cc.primary_overlapping_real END) AS b_overlap_real
    FROM scope s
    JOIN compare_counts cc ON cc.img_unique_id = s.img_unique_id
    CROSS JOIN LATERAL (
        SELECT cc.answer_id = COALESCE(s.a_answer, 0) AS is_a,
               cc.answer_id = COALESCE(s.b_answer, 0) AS is_b
    ) k
    WHERE s.kept
    GROUP BY cc.class_name
"""

# Where both sides are stored answers (two shadow/replay versions), region by region,
# through the primary regions: two regions are matched when both matched the same primary
# region; a region of one not so paired is overlapping when a region of the other is
# matched or overlapping to the primary region it is matched or overlapping to.
_BOTH_STORED_SQL = """
    both_regions AS MATERIALIZED (
        SELECT s.img_unique_id, s.a_answer, s.b_answer, x.side, ar.class_name, x.other,
               ar.matched_region_unique_id AS matched_to,
               COALESCE(ar.matched_region_unique_id, ar.overlap_region_unique_id) AS near,
               CASE WHEN ar.matched_region_unique_id IS NULL THEN ar.verdict
                    ELSE rv.verdict END AS verdict
        FROM scope s
        CROSS JOIN LATERAL (VALUES ('a', s.a_answer, s.b_answer),
                                   ('b', s.b_answer, s.a_answer)) x (side, answer, other)
        JOIN answer_regions ar ON ar.answer_id = x.answer
        LEFT JOIN region_verdicts rv ON rv.region_unique_id = ar.matched_region_unique_id
        WHERE NOT s.kept
    ),
    both_flags AS MATERIALIZED (
        SELECT br.img_unique_id, br.a_answer, br.b_answer, br.side, br.class_name,
               br.verdict, p.paired,
               NOT p.paired AND br.near IS NOT NULL AND EXISTS (
                   SELECT 1 FROM answer_regions o WHERE o.answer_id = br.other
                   AND COALESCE(o.matched_region_unique_id, o.overlap_region_unique_id)
                       = br.near) AS overlapping
        FROM both_regions br
        CROSS JOIN LATERAL (
            SELECT br.matched_to IS NOT NULL AND EXISTS (
                SELECT 1 FROM answer_regions o WHERE o.answer_id = br.other
                AND o.matched_region_unique_id = br.matched_to) AS paired
        ) p
    ),
    both_class AS (
        SELECT class_name,
            count(*) FILTER (WHERE side = 'a') AS a_calls,
            count(*) FILTER (WHERE side = 'a' AND verdict = 'real') AS a_real,
            count(*) FILTER (WHERE side = 'a' AND verdict = 'false_call') AS a_false,
            count(*) FILTER (WHERE side = 'a' AND verdict = 'unsure') AS a_unsure,
            count(*) FILTER (WHERE side = 'b') AS b_calls,
            count(*) FILTER (WHERE side = 'b' AND verdict = 'real') AS b_real,
            count(*) FILTER (WHERE side = 'b' AND verdict = 'false_call') AS b_false,
            count(*) FILTER (WHERE side = 'b' AND verdict = 'unsure') AS b_unsure,
            count(*) FILTER (WHERE side = 'a' AND paired) AS matched,
            count(*) FILTER (WHERE side = 'a' AND paired AND verdict = 'real') AS matched_real,
            count(*) FILTER (WHERE side = 'a' AND overlapping) AS a_overlap,
            count(*) FILTER (WHERE side = 'a' AND overlapping AND verdict = 'real')
                AS a_overlap_real,
            count(*) FILTER (WHERE side = 'b' AND overlapping) AS b_overlap,
            count(*) FILTER (WHERE side = 'b' AND overlapping AND verdict = 'real')
                AS b_overlap_real
        FROM both_flags
        GROUP BY class_name
    )
"""

# The images on which the two disagree (a call of one that the other neither matches nor
# overlaps, or an overlapping call): from the counts kept on `model_answers` where one
# side is the primary answer, from the regions where both are stored answers. Rows:
# (img_unique_id, a_only, b_only, a_overlapping, b_overlapping, a_answer, b_answer).
_PER_IMAGE_SQL = """
    SELECT img_unique_id,
           CASE WHEN a_answer IS NULL THEN primary_regions - primary_overlapping
                ELSE regions - overlapping END - matched AS a_only,
           CASE WHEN b_answer IS NULL THEN primary_regions - primary_overlapping
                ELSE regions - overlapping END - matched AS b_only,
           CASE WHEN a_answer IS NULL THEN primary_overlapping ELSE overlapping END
             AS a_overlapping,
           CASE WHEN b_answer IS NULL THEN primary_overlapping ELSE overlapping END
             AS b_overlapping,
           a_answer, b_answer
    FROM scope
    WHERE kept AND NOT same AND (regions > matched OR primary_regions > matched)
    UNION ALL
    SELECT img_unique_id,
           count(*) FILTER (WHERE side = 'a' AND NOT paired AND NOT overlapping),
           count(*) FILTER (WHERE side = 'b' AND NOT paired AND NOT overlapping),
           count(*) FILTER (WHERE side = 'a' AND overlapping),
           count(*) FILTER (WHERE side = 'b' AND overlapping),
           a_answer, b_answer
    FROM both_flags
    GROUP BY img_unique_id, a_answer, b_answer
    HAVING count(*) FILTER (WHERE NOT paired) > 0
"""


def _compare_cte(filters: CompareFilters) -> tuple[str, dict[str, Any]]:
    """The WITH clause of the comparison, and its parameters: `answers_a`, `answers_b`,
    `scope` (images answered by both, filtered), `both_*` (the regions where both sides
    are stored answers), `class_rows` (the per-class counts, several rows per class) and
    `per_image` (the disagreeing images)."""
    conditions = ["TRUE"]
    params: dict[str, Any] = {}
    dated = False
    if filters.start_date:
        conditions.append("im.timestamp >= :start")
        params["start"] = day_start(filters.start_date)
        dated = True
    if filters.end_date and (end := day_end(filters.end_date)) is not None:
        conditions.append("im.timestamp < :end")
        params["end"] = end
        dated = True
    if filters.batch_id:
        conditions.append(
            "EXISTS (SELECT 1 FROM inspections bi WHERE bi.img_unique_id = a.img_unique_id"
            " AND bi.batch_id = :batch_id)"
        )
        params["batch_id"] = filters.batch_id
    if filters.context is not None:
        wanted = {k: v for k, v in vars(filters.context).items() if v is not None}
        parts = [f"ic.{name} = :ctx_{name}" for name in wanted]
        conditions.append(
            "EXISTS (SELECT 1 FROM inspection_contexts ic WHERE ic.img_unique_id ="
            f" a.img_unique_id AND {' AND '.join(parts)})"
        )
        params.update({f"ctx_{name}": value for name, value in wanted.items()})
    # The images' rows only for a date filter: the disagreements are listed newest first
    # by id, which starts with the UTC time of upload (`images.timestamp`).
    images = "JOIN images im ON im.img_unique_id = a.img_unique_id" if dated else ""
    sql = f"""
    WITH answers_a AS ({_ANSWERS_SQL.format(v="a")}),
    answers_b AS ({_ANSWERS_SQL.format(v="b")}),
    scope AS MATERIALIZED (
        SELECT a.img_unique_id, a.a_answer, a.b_answer,
               a.a_answer IS NULL OR a.b_answer IS NULL OR a.a_answer = a.b_answer AS kept,
               a.a_answer IS NOT DISTINCT FROM a.b_answer AS same,
               a.region_count AS regions, a.matched_count AS matched,
               a.primary_region_count AS primary_regions,
               a.overlapping_count AS overlapping,
               a.primary_overlapping_count AS primary_overlapping
        FROM ({_SCOPE_SQL}) a
        {images}
        WHERE {" AND ".join(conditions)}
    ),
    {_BOTH_STORED_SQL},
    class_rows AS ({_KEPT_SQL} UNION ALL SELECT * FROM both_class),
    per_image AS MATERIALIZED ({_PER_IMAGE_SQL})
    """
    return sql, params


COUNT_FIELDS = (
    "matched",
    "a_only",
    "b_only",
    "a_overlapping",
    "b_overlapping",
    "a_real",
    "a_false",
    "a_unsure",
    "a_unreviewed",
    "b_real",
    "b_false",
    "b_unsure",
    "b_unreviewed",
    "a_missed",
    "b_missed",
)
"""The per-class counts of the comparison, in `ComparisonRepository.compare`'s order."""

# One statement: the per-class counts, the images compared, the disagreeing images and
# the newest `limit` of them, each as JSON.
_COMPARE_SQL = """
    , per_class AS (
        SELECT class_name,
            matched,
            a_calls - matched - a_overlap AS a_only,
            b_calls - matched - b_overlap AS b_only,
            a_overlap AS a_overlapping,
            b_overlap AS b_overlapping,
            a_real,
            a_false,
            a_unsure,
            a_calls - a_real - a_false - a_unsure AS a_unreviewed,
            b_real,
            b_false,
            b_unsure,
            b_calls - b_real - b_false - b_unsure AS b_unreviewed,
            b_real - matched_real - b_overlap_real AS a_missed,
            a_real - matched_real - a_overlap_real AS b_missed
        FROM (
            SELECT class_name, COALESCE(sum(a_calls), 0) AS a_calls,
                COALESCE(sum(a_real), 0) AS a_real, COALESCE(sum(a_false), 0) AS a_false,
                COALESCE(sum(a_unsure), 0) AS a_unsure, COALESCE(sum(b_calls), 0) AS b_calls,
                COALESCE(sum(b_real), 0) AS b_real, COALESCE(sum(b_false), 0) AS b_false,
                COALESCE(sum(b_unsure), 0) AS b_unsure, COALESCE(sum(matched), 0) AS matched,
                COALESCE(sum(matched_real), 0) AS matched_real,
                COALESCE(sum(a_overlap), 0) AS a_overlap,
                COALESCE(sum(a_overlap_real), 0) AS a_overlap_real,
                COALESCE(sum(b_overlap), 0) AS b_overlap,
                COALESCE(sum(b_overlap_real), 0) AS b_overlap_real
            FROM class_rows GROUP BY class_name
        ) c
        WHERE a_calls + b_calls > 0
    ),
    listed AS (
        SELECT p.img_unique_id, p.a_only, p.b_only, p.a_overlapping, p.b_overlapping,
               p.a_answer, p.b_answer
        FROM per_image p
        ORDER BY p.img_unique_id DESC
        LIMIT :limit
    )
    SELECT
        (SELECT json_agg(json_build_array(class_name, matched, a_only, b_only,
                a_overlapping, b_overlapping, a_real, a_false, a_unsure, a_unreviewed, b_real,
                b_false, b_unsure, b_unreviewed, a_missed, b_missed) ORDER BY class_name)
         FROM per_class),
        (SELECT count(*) FROM scope),
        (SELECT count(*) FROM per_image),
        (SELECT json_agg(json_build_array(l.img_unique_id, im.timestamp, l.a_only, l.b_only,
                l.a_overlapping, l.b_overlapping, l.a_answer, l.b_answer)
                ORDER BY l.img_unique_id DESC)
         FROM listed l
         JOIN images im ON im.img_unique_id = l.img_unique_id)
"""


@dataclass(frozen=True)
class ComparisonRows:
    """What the comparison statement answers.

    Attributes:
        classes: per class, `[class_name, *counts in COUNT_FIELDS order]`, by name.
        images: images both versions answered (within the filters).
        disagreeing_images: those on which they disagree.
        disagreements: the newest `limit` of them, newest first, each
            `[img_unique_id, timestamp (ISO text), a_only, b_only, a_overlapping,
            b_overlapping, a_answer, b_answer]`.
    """

    classes: list[list[Any]]
    images: int
    disagreeing_images: int
    disagreements: list[list[Any]]


class ComparisonRepository:
    """The comparison of model versions (docs/models.md) over one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._jit_off = False

    async def _without_jit(self) -> None:
        """JIT off for the rest of this transaction: the comparison's estimates are far
        too high (a UNION of answers per image), so PostgreSQL would spend seconds
        compiling it (6.2 s of 6.5 s at 10,000 images) for a query that runs in a
        fraction of one. And `work_mem` 64 MB: its hashes and sorts of a few hundred
        thousand narrow rows then stay in memory (at 4 MB, 100,000 images spilled
        ~50 MB to temporary files)."""
        if not self._jit_off:
            await self.session.execute(text("SET LOCAL jit = off"))
            await self.session.execute(text("SET LOCAL work_mem = '64MB'"))
            self._jit_off = True

    async def versions(self) -> list[Any]:
        """Every (model_name, model_version) with answers: primary, shadow and replay
        answer counts (succeeded), first and last seen; by last seen, newest first."""
        rows = await self.session.execute(
            text(
                """
                SELECT model_name, model_version,
                       sum(p)::bigint, sum(s)::bigint, sum(r)::bigint, min(first), max(last)
                FROM (
                    SELECT model_name, model_version, count(*) AS p, 0 AS s, 0 AS r,
                           min(created_at) AS first, max(created_at) AS last
                    FROM inspections
                    WHERE status = 'succeeded'
                      AND (model_version IS NOT NULL OR model_name IS NOT NULL)
                    GROUP BY model_name, model_version
                    UNION ALL
                    SELECT model_name, model_version, 0,
                           count(*) FILTER (WHERE role = 'shadow'),
                           count(*) FILTER (WHERE role = 'replay'),
                           min(created_at), max(created_at)
                    FROM model_answers
                    WHERE status = 'succeeded'
                    GROUP BY model_name, model_version
                ) answers
                GROUP BY model_name, model_version
                ORDER BY max(last) DESC, model_name, model_version
                """
            )
        )
        return list(rows)

    async def failed_answers(self) -> list[Any]:
        """Failed answers per model service URL: (url, failures, last failure, last
        error)."""
        rows = await self.session.execute(
            text(
                """
                SELECT DISTINCT ON (model_service_url) model_service_url,
                       count(*) OVER (PARTITION BY model_service_url),
                       created_at, error
                FROM model_answers WHERE status = 'failed'
                ORDER BY model_service_url, created_at DESC
                """
            )
        )
        return list(rows)

    async def compare(self, a: str, b: str, filters: CompareFilters, limit: int) -> ComparisonRows:
        """Versions `a` and `b` on the images both answered (see `_compare_cte`), in one
        statement: per-class counts, images compared, disagreeing images and the newest
        `limit` of them."""
        await self._without_jit()
        cte, params = _compare_cte(filters)
        row = (
            await self.session.execute(
                text(cte + _COMPARE_SQL), {**params, "a": a, "b": b, "limit": limit}
            )
        ).one()
        return ComparisonRows(
            classes=row[0] or [],
            images=int(row[1]),
            disagreeing_images=int(row[2]),
            disagreements=row[3] or [],
        )

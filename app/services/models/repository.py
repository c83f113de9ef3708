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

    async def add(self, answer: ModelAnswer, regions: Sequence[dict[str, object]]) -> int:
        """Insert an answer and its regions (column values by name, without `answer_id`);
        returns the new `answer_id`."""
        self.session.add(answer)
        await self.session.flush()
        if regions:
            await self.session.execute(
                insert(AnswerRegion), [{**r, "answer_id": answer.answer_id} for r in regions]
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


# The answer of one model version on each image: the primary answer when the inspection
# was made by that version (`inspections.model_version`), else that version's newest
# succeeded answer in `model_answers` (shadow or replay). `answer_id` NULL: primary.
_SIDE_SQL = """
    SELECT i.img_unique_id, NULL::bigint AS answer_id
    FROM inspections i
    WHERE i.model_version = :{v} AND i.status = 'succeeded'
    UNION ALL
    (SELECT DISTINCT ON (ma.img_unique_id) ma.img_unique_id, ma.answer_id
     FROM model_answers ma
     WHERE ma.model_version = :{v} AND ma.status = 'succeeded'
       AND NOT EXISTS (
         SELECT 1 FROM inspections p
         WHERE p.img_unique_id = ma.img_unique_id AND p.model_version = :{v})
     ORDER BY ma.img_unique_id, ma.answer_id DESC)
"""

# The calls (regions) of one side on the images in scope, counted per defect class.
# Where the side is the primary answer (`{side}_answer` NULL) its calls are the `classes`
# rows' region counts and its verdicts those of `region_verdicts`; where it is a stored
# answer, its `answer_regions` (a matched one takes its primary region's verdict).
# Rows: (class_name, calls, real, false_call, unsure), several per class.
_CALLS_SQL = """
    SELECT c.class_name, sum(c.total_regions)::bigint AS calls,
           0::bigint AS real, 0::bigint AS false_call, 0::bigint AS unsure
    FROM scope s JOIN classes c ON c.img_unique_id = s.img_unique_id
    WHERE s.{side}_answer IS NULL
    GROUP BY c.class_name
    UNION ALL
    SELECT c.class_name, 0,
           count(*) FILTER (WHERE rv.verdict = 'real'),
           count(*) FILTER (WHERE rv.verdict = 'false_call'),
           count(*) FILTER (WHERE rv.verdict = 'unsure')
    FROM scope s
    JOIN region_verdicts rv ON rv.img_unique_id = s.img_unique_id
    JOIN regions r ON r.region_unique_id = rv.region_unique_id
    JOIN classes c ON c.class_unique_id = r.class_unique_id
    WHERE s.{side}_answer IS NULL
    GROUP BY c.class_name
    UNION ALL
    SELECT ar.class_name, count(*),
           count(*) FILTER (WHERE v.verdict = 'real'),
           count(*) FILTER (WHERE v.verdict = 'false_call'),
           count(*) FILTER (WHERE v.verdict = 'unsure')
    FROM scope s
    JOIN answer_regions ar ON ar.answer_id = s.{side}_answer
    LEFT JOIN region_verdicts rv ON rv.region_unique_id = ar.matched_region_unique_id
    CROSS JOIN LATERAL (SELECT CASE WHEN ar.matched_region_unique_id IS NULL
                                    THEN ar.verdict ELSE rv.verdict END AS verdict) v
    WHERE s.{side}_answer IS NOT NULL
    GROUP BY ar.class_name
"""

# The matched calls: a stored answer's regions matched to the primary regions where the
# other side is the primary answer; where both are stored answers, the pairs of their
# regions matched to the same primary region. Rows: (img_unique_id, class_name, real).
_MATCHED_SQL = """
    SELECT ar.class_name, count(*) AS matched, count(*) FILTER (WHERE rv.verdict = 'real') AS real
    FROM scope s
    JOIN answer_regions ar ON ar.answer_id = COALESCE(s.a_answer, s.b_answer)
    LEFT JOIN region_verdicts rv ON rv.region_unique_id = ar.matched_region_unique_id
    WHERE (s.a_answer IS NULL) <> (s.b_answer IS NULL)
      AND ar.matched_region_unique_id IS NOT NULL
    GROUP BY ar.class_name
    UNION ALL
    SELECT ra.class_name, count(*), count(*) FILTER (WHERE rv.verdict = 'real')
    FROM scope s
    JOIN answer_regions ra ON ra.answer_id = s.a_answer
    JOIN answer_regions rb ON rb.answer_id = s.b_answer
         AND rb.matched_region_unique_id = ra.matched_region_unique_id
    LEFT JOIN region_verdicts rv ON rv.region_unique_id = ra.matched_region_unique_id
    WHERE s.a_answer IS NOT NULL AND s.b_answer IS NOT NULL
    GROUP BY ra.class_name
    UNION ALL
    SELECT c.class_name, count(*), count(*) FILTER (WHERE rv.verdict = 'real')
    FROM scope s
    JOIN regions r ON r.img_unique_id = s.img_unique_id
    JOIN classes c ON c.class_unique_id = r.class_unique_id
    LEFT JOIN region_verdicts rv ON rv.region_unique_id = r.region_unique_id
    WHERE s.a_answer IS NULL AND s.b_answer IS NULL
    GROUP BY c.class_name
"""

# The images on which the two disagree, with how many calls each has that the other has
# not: from the counts kept on `model_answers` where one side is the primary answer, from
# the pairs of regions matched to the same primary region where both are stored answers.
_PER_IMAGE_SQL = """
    SELECT s.img_unique_id,
           CASE WHEN s.a_answer IS NULL THEN ma.primary_region_count ELSE ma.region_count END
             - ma.matched_count AS a_only,
           CASE WHEN s.b_answer IS NULL THEN ma.primary_region_count ELSE ma.region_count END
             - ma.matched_count AS b_only
    FROM scope s
    JOIN model_answers ma ON ma.answer_id = COALESCE(s.a_answer, s.b_answer)
    WHERE (s.a_answer IS NULL) <> (s.b_answer IS NULL)
      AND (ma.region_count > ma.matched_count OR ma.primary_region_count > ma.matched_count)
    UNION ALL
    SELECT img_unique_id, a_calls - pairs, b_calls - pairs
    FROM (
        SELECT s.img_unique_id, ma.region_count AS a_calls, mb.region_count AS b_calls,
               (SELECT count(*) FROM answer_regions ra
                JOIN answer_regions rb ON rb.answer_id = s.b_answer
                     AND rb.matched_region_unique_id = ra.matched_region_unique_id
                WHERE ra.answer_id = s.a_answer) AS pairs
        FROM scope s
        JOIN model_answers ma ON ma.answer_id = s.a_answer
        JOIN model_answers mb ON mb.answer_id = s.b_answer
    ) both_stored
    WHERE a_calls > pairs OR b_calls > pairs
"""


def _compare_cte(filters: CompareFilters) -> tuple[str, dict[str, Any]]:
    """The WITH clause of the comparison, and its parameters: `side_a`, `side_b`,
    `scope` (images answered by both, filtered), `calls_a`, `calls_b` (each side's calls
    and verdicts counted per image and class), `matched` (one row per matched pair), their
    per-class sums and `per_image` (the disagreeing images)."""
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
    WITH side_a AS ({_SIDE_SQL.format(v="a")}),
    side_b AS ({_SIDE_SQL.format(v="b")}),
    scope AS MATERIALIZED (
        SELECT a.img_unique_id, a.answer_id AS a_answer, b.answer_id AS b_answer
        FROM side_a a
        JOIN side_b b ON b.img_unique_id = a.img_unique_id
        {images}
        WHERE {" AND ".join(conditions)}
    ),
    calls_a AS ({_CALLS_SQL.format(side="a")}),
    calls_b AS ({_CALLS_SQL.format(side="b")}),
    matched AS ({_MATCHED_SQL}),
    a_class AS (
        SELECT class_name, sum(calls) AS calls, sum(real) AS real,
               sum(false_call) AS false_call, sum(unsure) AS unsure
        FROM calls_a GROUP BY class_name
    ),
    b_class AS (
        SELECT class_name, sum(calls) AS calls, sum(real) AS real,
               sum(false_call) AS false_call, sum(unsure) AS unsure
        FROM calls_b GROUP BY class_name
    ),
    m_class AS (
        SELECT class_name, sum(matched) AS matched, sum(real) AS real
        FROM matched GROUP BY class_name
    ),
    per_image AS MATERIALIZED ({_PER_IMAGE_SQL})
    """
    return sql, params


COUNT_FIELDS = (
    "matched",
    "a_only",
    "b_only",
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
        SELECT COALESCE(a.class_name, b.class_name) AS class_name,
            COALESCE(m.matched, 0) AS matched,
            COALESCE(a.calls, 0) - COALESCE(m.matched, 0) AS a_only,
            COALESCE(b.calls, 0) - COALESCE(m.matched, 0) AS b_only,
            COALESCE(a.real, 0) AS a_real,
            COALESCE(a.false_call, 0) AS a_false,
            COALESCE(a.unsure, 0) AS a_unsure,
            COALESCE(a.calls - a.real - a.false_call - a.unsure, 0) AS a_unreviewed,
            COALESCE(b.real, 0) AS b_real,
            COALESCE(b.false_call, 0) AS b_false,
            COALESCE(b.unsure, 0) AS b_unsure,
            COALESCE(b.calls - b.real - b.false_call - b.unsure, 0) AS b_unreviewed,
            COALESCE(b.real, 0) - COALESCE(m.real, 0) AS a_missed,
            COALESCE(a.real, 0) - COALESCE(m.real, 0) AS b_missed
        FROM a_class a
        FULL JOIN b_class b ON b.class_name = a.class_name
        LEFT JOIN m_class m ON m.class_name = COALESCE(a.class_name, b.class_name)
        WHERE COALESCE(a.calls, 0) + COALESCE(b.calls, 0) > 0
    ),
    listed AS (
        SELECT p.img_unique_id, p.a_only, p.b_only
        FROM per_image p
        ORDER BY p.img_unique_id DESC
        LIMIT :limit
    )
    SELECT
        (SELECT json_agg(json_build_array(class_name, matched, a_only, b_only, a_real,
                a_false, a_unsure, a_unreviewed, b_real, b_false, b_unsure, b_unreviewed,
                a_missed, b_missed) ORDER BY class_name) FROM per_class),
        (SELECT count(*) FROM scope),
        (SELECT count(*) FROM per_image),
        (SELECT json_agg(json_build_array(l.img_unique_id, im.timestamp, l.a_only, l.b_only,
                s.a_answer, s.b_answer) ORDER BY l.img_unique_id DESC)
         FROM listed l
         JOIN scope s ON s.img_unique_id = l.img_unique_id
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
            `[img_unique_id, timestamp (ISO text), a_only, b_only, a_answer, b_answer]`.
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
        """JIT off for the rest of this transaction: the FULL JOIN of the comparison is
        estimated at billions of rows, so PostgreSQL would spend seconds compiling it
        (6.2 s of 6.5 s at 10,000 images) for a query that runs in a fraction of one."""
        if not self._jit_off:
            await self.session.execute(text("SET LOCAL jit = off"))
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

"""Queries of the model answers (`model_answers`, `answer_regions`): the answers of model
services other than the primary one, and what the comparison reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, exists, insert, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.models.database import (
    AnswerRegion,
    DefectClass,
    Image,
    Inspection,
    ModelAnswer,
    Region,
)
from app.services.boards.repository import ContextFilter
from app.services.database.repositories import day_end, day_start
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

    async def set_verdict(self, region: AnswerRegion, verdict: str | None, reviewer: str) -> None:
        """Set (None: withdraw) a reviewer's verdict on an answer region (flushed)."""
        region.verdict = verdict
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
    that matches no primary region, or a primary region matches none of its regions."""
    answer = aliased(ModelAnswer)
    own = aliased(AnswerRegion)
    matching = aliased(AnswerRegion)
    unmatched_own = exists().where(
        own.answer_id == answer.answer_id, own.matched_region_unique_id.is_(None)
    )
    missed_primary = exists().where(
        Region.img_unique_id == answer.img_unique_id,
        ~exists().where(
            matching.answer_id == answer.answer_id,
            matching.matched_region_unique_id == Region.region_unique_id,
        ),
    )
    return exists().where(
        answer.img_unique_id == img_unique_id,
        answer.model_version == model_version,
        answer.status == "succeeded",
        or_(unmatched_own, missed_primary),
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

# The calls (regions) of one side on the images in scope: (image, class, key, verdict).
# The key of a primary region is its region_unique_id; an answer region matched to a
# primary region takes that region's id (and its verdict); an unmatched one gets
# -answer_region_id, which no other call has. Two calls with the same key are a match.
_CALLS_SQL = """
    SELECT s.img_unique_id, c.class_name, r.region_unique_id AS key, rv.verdict
    FROM scope s
    JOIN regions r ON r.img_unique_id = s.img_unique_id
    JOIN classes c ON c.class_unique_id = r.class_unique_id
    LEFT JOIN region_verdicts rv ON rv.region_unique_id = r.region_unique_id
    WHERE s.{side}_answer IS NULL
    UNION ALL
    SELECT s.img_unique_id, ar.class_name,
           COALESCE(ar.matched_region_unique_id, -ar.answer_region_id) AS key,
           CASE WHEN ar.matched_region_unique_id IS NULL THEN ar.verdict ELSE rv.verdict END
    FROM scope s
    JOIN answer_regions ar ON ar.answer_id = s.{side}_answer
    LEFT JOIN region_verdicts rv ON rv.region_unique_id = ar.matched_region_unique_id
    WHERE s.{side}_answer IS NOT NULL
"""


def _compare_cte(filters: CompareFilters) -> tuple[str, dict[str, Any]]:
    """The WITH clause shared by the comparison's queries, and its parameters:
    `side_a`, `side_b`, `scope` (images answered by both, filtered), `calls_a`,
    `calls_b` and `joined` (one row per call of either side, matched calls once)."""
    conditions = ["TRUE"]
    params: dict[str, Any] = {}
    if filters.start_date:
        conditions.append("im.timestamp >= :start")
        params["start"] = day_start(filters.start_date)
    if filters.end_date and (end := day_end(filters.end_date)) is not None:
        conditions.append("im.timestamp < :end")
        params["end"] = end
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
    sql = f"""
    WITH side_a AS ({_SIDE_SQL.format(v="a")}),
    side_b AS ({_SIDE_SQL.format(v="b")}),
    scope AS MATERIALIZED (
        SELECT a.img_unique_id, im.timestamp, a.answer_id AS a_answer, b.answer_id AS b_answer
        FROM side_a a
        JOIN side_b b ON b.img_unique_id = a.img_unique_id
        JOIN images im ON im.img_unique_id = a.img_unique_id
        WHERE {" AND ".join(conditions)}
    ),
    calls_a AS ({_CALLS_SQL.format(side="a")}),
    calls_b AS ({_CALLS_SQL.format(side="b")}),
    joined AS (
        SELECT COALESCE(ca.img_unique_id, cb.img_unique_id) AS img_unique_id,
               COALESCE(ca.class_name, cb.class_name) AS class_name,
               ca.key IS NOT NULL AS has_a,
               cb.key IS NOT NULL AS has_b,
               ca.verdict AS a_verdict,
               cb.verdict AS b_verdict
        FROM calls_a ca FULL JOIN calls_b cb ON cb.key = ca.key
    )
    """
    return sql, params


_COUNTS_SQL = """
    SELECT class_name,
        count(*) FILTER (WHERE has_a AND has_b) AS matched,
        count(*) FILTER (WHERE has_a AND NOT has_b) AS a_only,
        count(*) FILTER (WHERE has_b AND NOT has_a) AS b_only,
        count(*) FILTER (WHERE has_a AND a_verdict = 'real') AS a_real,
        count(*) FILTER (WHERE has_a AND a_verdict = 'false_call') AS a_false,
        count(*) FILTER (WHERE has_a AND a_verdict = 'unsure') AS a_unsure,
        count(*) FILTER (WHERE has_a AND a_verdict IS NULL) AS a_unreviewed,
        count(*) FILTER (WHERE has_b AND b_verdict = 'real') AS b_real,
        count(*) FILTER (WHERE has_b AND b_verdict = 'false_call') AS b_false,
        count(*) FILTER (WHERE has_b AND b_verdict = 'unsure') AS b_unsure,
        count(*) FILTER (WHERE has_b AND b_verdict IS NULL) AS b_unreviewed,
        count(*) FILTER (WHERE has_b AND NOT has_a AND b_verdict = 'real') AS a_missed,
        count(*) FILTER (WHERE has_a AND NOT has_b AND a_verdict = 'real') AS b_missed
    FROM joined
    GROUP BY class_name
    ORDER BY class_name
"""

_DISAGREEMENTS_SQL = """
    , per_image AS (
        SELECT img_unique_id,
            count(*) FILTER (WHERE has_a AND NOT has_b) AS a_only,
            count(*) FILTER (WHERE has_b AND NOT has_a) AS b_only
        FROM joined
        GROUP BY img_unique_id
        HAVING count(*) FILTER (WHERE has_a <> has_b) > 0
    )
    SELECT s.img_unique_id, s.timestamp, p.a_only, p.b_only, s.a_answer, s.b_answer,
           (SELECT count(*) FROM per_image) AS total
    FROM per_image p JOIN scope s ON s.img_unique_id = p.img_unique_id
    ORDER BY s.timestamp DESC, s.img_unique_id DESC
    LIMIT :limit
"""


class ComparisonRepository:
    """The comparison of model versions (docs/models.md) over one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

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

    async def class_counts(self, a: str, b: str, filters: CompareFilters) -> list[Any]:
        """Per defect class: matched, A only, B only, and each side's verdict counts
        (see `_COUNTS_SQL`), over the images both versions answered."""
        cte, params = _compare_cte(filters)
        rows = await self.session.execute(text(cte + _COUNTS_SQL), {**params, "a": a, "b": b})
        return list(rows)

    async def images_compared(self, a: str, b: str, filters: CompareFilters) -> int:
        """How many images both versions answered (within the filters)."""
        cte, params = _compare_cte(filters)
        row = await self.session.execute(
            text(cte + "SELECT count(*) FROM scope"), {**params, "a": a, "b": b}
        )
        return int(row.scalar_one())

    async def disagreements(self, a: str, b: str, filters: CompareFilters, limit: int) -> list[Any]:
        """The newest `limit` images where the versions disagree (a call of one that the
        other has not): (img_unique_id, timestamp, a_only, b_only, a_answer, b_answer,
        total such images)."""
        cte, params = _compare_cte(filters)
        rows = await self.session.execute(
            text(cte + _DISAGREEMENTS_SQL), {**params, "a": a, "b": b, "limit": limit}
        )
        return list(rows)

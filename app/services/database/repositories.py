"""Repositories: every database query of the agent, built from a session.

Services call these and only `flush()`; the caller's unit of work commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, and_, delete, exists, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.models.database import (
    Batch,
    DefectClass,
    Image,
    Inspection,
    InspectionStatus,
    Region,
)
from app.models.model_service import Analysis

# First key of the advisory locks taken per input hash (the second is the hash's hashtext).
INPUT_HASH_LOCK_SPACE = 0x414F49  # "AOI"


@dataclass(frozen=True)
class ImageFilters:
    """Filters of the image listing; dates are inclusive UTC days."""

    start_date: date | None = None
    end_date: date | None = None
    class_name: str | None = None
    batch_id: str | None = None
    min_defects: int | None = None


@dataclass(frozen=True)
class DefectFilters:
    """Filters of the defect-region query; areas in pixels, dates inclusive UTC days."""

    class_name: str | None = None
    start_date: date | None = None
    end_date: date | None = None
    min_area: int | None = None
    max_area: int | None = None
    img_unique_id: str | None = None


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of `day`."""
    return datetime.combine(day, time.min, tzinfo=UTC)


class InspectionRepository:
    """The upload ledger and batches."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, inspection: Inspection) -> None:
        """Insert a ledger row."""
        self.session.add(inspection)
        await self.session.flush()

    async def add_batch(self, batch: Batch) -> None:
        """Insert a batch row."""
        self.session.add(batch)
        await self.session.flush()

    async def get(self, img_unique_id: str, *, for_update: bool = False) -> Inspection | None:
        """The ledger row of an inspection, optionally locked until the transaction ends."""
        stmt = select(Inspection).where(Inspection.img_unique_id == img_unique_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get_batch(self, batch_id: str) -> Batch | None:
        """A batch row."""
        return await self.session.get(Batch, batch_id)

    async def batch_items(self, batch_id: str) -> list[tuple[Inspection, dict[str, int] | None]]:
        """The inspections of a batch in upload order, each with its defect counts by class."""
        counts = (
            select(
                DefectClass.img_unique_id,
                func.jsonb_object_agg(DefectClass.class_name, DefectClass.total_regions).label(
                    "classes"
                ),
            )
            .group_by(DefectClass.img_unique_id)
            .subquery()
        )
        stmt = (
            select(Inspection, counts.c.classes)
            .outerjoin(counts, counts.c.img_unique_id == Inspection.img_unique_id)
            .where(Inspection.batch_id == batch_id)
            .order_by(Inspection.batch_position, Inspection.img_unique_id)
        )
        rows = (await self.session.execute(stmt)).all()
        return [(row[0], row[1]) for row in rows]

    async def mark(self, img_unique_id: str, **values: Any) -> None:
        """Update ledger fields of one inspection."""
        await self.session.execute(
            update(Inspection).where(Inspection.img_unique_id == img_unique_id).values(**values)
        )

    async def unfinished_batch_items_without_job(self) -> list[str]:
        """Batch inspections still pending/processing that no queued or running job covers.

        These are left when the agent died between accepting a batch and queueing it.
        """
        no_live_job = text(
            "NOT EXISTS (SELECT 1 FROM procrastinate_jobs j WHERE j.status IN ('todo', 'doing')"
            " AND j.args->>'img_unique_id' = inspections.img_unique_id)"
        )
        stmt = select(Inspection.img_unique_id).where(
            Inspection.batch_id.is_not(None),
            Inspection.status.in_([InspectionStatus.PENDING, InspectionStatus.PROCESSING]),
            no_live_job,
        )
        return list((await self.session.execute(stmt)).scalars())

    async def fail_interrupted_single_uploads(self, older_than: datetime) -> int:
        """Mark single uploads left `processing` by a dead agent as failed (input kept)."""
        result = await self.session.execute(
            update(Inspection)
            .where(
                Inspection.batch_id.is_(None),
                Inspection.status == InspectionStatus.PROCESSING,
                Inspection.updated_at < older_than,
            )
            .values(
                status=InspectionStatus.FAILED,
                last_error="interrupted: the agent stopped while this image was being inspected;"
                " retry it",
            )
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def first_inspections_by_hash(
        self, hashes: Sequence[str], *, lock: bool = False
    ) -> dict[str, Inspection]:
        """Per input SHA-256, the first inspection of those bytes that did not fail.

        Args:
            hashes: hex SHA-256 digests (repeats allowed).
            lock: take a transaction-scoped advisory lock per digest first (in a fixed
                order, so two writers cannot deadlock), so that whoever inserts the next
                row with one of them does so only after this transaction ends.
        """
        distinct = sorted(set(hashes))
        if not distinct:
            return {}
        if lock:
            await self.session.execute(
                text(
                    "SELECT pg_advisory_xact_lock(:space, k) FROM (SELECT DISTINCT"
                    " hashtext(h) AS k FROM unnest(CAST(:hashes AS text[])) AS h ORDER BY 1"
                    " OFFSET 0) AS keys"
                ),
                {"space": INPUT_HASH_LOCK_SPACE, "hashes": distinct},
            )
        stmt = (
            select(Inspection)
            .ext(distinct_on(Inspection.input_sha256))
            .where(
                Inspection.input_sha256.in_(distinct),
                Inspection.status != InspectionStatus.FAILED,
            )
            .order_by(
                Inspection.input_sha256,
                Inspection.created_at,
                # a batch's rows share created_at: its first file is the first inspection
                func.coalesce(Inspection.batch_position, 0),
                Inspection.img_unique_id,
            )
        )
        rows = (await self.session.execute(stmt)).scalars()
        return {row.input_sha256: row for row in rows if row.input_sha256}

    async def settled_states(self, img_unique_ids: Sequence[str]) -> dict[str, Inspection | None]:
        """The ledger rows among `img_unique_ids` that are finished for good: `succeeded`, or
        `failed` with no queued or running job that could still retry them. Deleted rows
        map to None; unfinished ones are absent."""
        if not img_unique_ids:
            return {}
        live_job = text(
            "EXISTS (SELECT 1 FROM procrastinate_jobs j WHERE j.status IN ('todo', 'doing')"
            " AND j.args->>'img_unique_id' = inspections.img_unique_id)"
        )
        stmt = select(Inspection, live_job).where(Inspection.img_unique_id.in_(img_unique_ids))
        found: dict[str, Inspection | None] = dict.fromkeys(img_unique_ids)
        for inspection, has_job in (await self.session.execute(stmt)).all():
            finished = inspection.status == InspectionStatus.SUCCEEDED or (
                inspection.status == InspectionStatus.FAILED and not has_job
            )
            if finished:
                found[inspection.img_unique_id] = inspection
            else:
                del found[inspection.img_unique_id]
        return found

    async def delete(self, img_unique_id: str) -> None:
        """Delete a ledger row."""
        await self.session.execute(
            delete(Inspection).where(Inspection.img_unique_id == img_unique_id)
        )

    async def counts_by_status(self) -> dict[str, int]:
        """Number of ledger rows per status."""
        rows = await self.session.execute(
            select(Inspection.status, func.count()).group_by(Inspection.status)
        )
        return {status.value: int(n) for status, n in rows.all()}

    async def recent_failures(self, limit: int) -> Sequence[Inspection]:
        """The newest failed inspections."""
        stmt = (
            select(Inspection)
            .where(Inspection.status == InspectionStatus.FAILED)
            .order_by(Inspection.updated_at.desc())
            .limit(limit)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def timing_means(self) -> tuple[float | None, float | None]:
        """Mean model-service round trip and mean end-to-end time of successes, seconds."""
        row = (
            await self.session.execute(
                select(
                    func.avg(Inspection.model_service_seconds), func.avg(Inspection.total_seconds)
                ).where(Inspection.status == InspectionStatus.SUCCEEDED)
            )
        ).one()
        return _float(row[0]), _float(row[1])

    async def count_batches(self) -> int:
        """Number of batches."""
        return int(
            (await self.session.execute(select(func.count()).select_from(Batch))).scalar_one()
        )


class ImageRepository:
    """Inspected images with their defect classes and regions."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_result(self, image: Image, analysis: Analysis) -> None:
        """Insert an image, its classes and their regions (bulk inserts, one round trip each)."""
        self.session.add(image)
        await self.session.flush()
        for class_name, found in analysis.classes.items():
            class_unique_id = (
                await self.session.execute(
                    insert(DefectClass)
                    .values(
                        img_unique_id=image.img_unique_id,
                        class_id=found.class_id,
                        class_name=class_name,
                        total_regions=found.total_regions,
                        total_area_pixels=found.total_area_pixels,
                    )
                    .returning(DefectClass.class_unique_id)
                )
            ).scalar_one()
            if found.regions:
                await self.session.execute(
                    insert(Region),
                    [
                        {
                            "class_unique_id": class_unique_id,
                            "img_unique_id": image.img_unique_id,
                            "region_id": r.region_id,
                            "centroid_x": r.centroid.x,
                            "centroid_y": r.centroid.y,
                            "bbox_x": r.bounding_box.x,
                            "bbox_y": r.bounding_box.y,
                            "bbox_width": r.bounding_box.width,
                            "bbox_height": r.bounding_box.height,
                            "area_pixels": r.area_pixels,
                            "perimeter": r.perimeter,
                            "major_axis": r.major_axis,
                            "minor_axis": r.minor_axis,
                            "circularity": r.circularity,
                            "aspect_ratio": r.aspect_ratio,
                        }
                        for r in found.regions
                    ],
                )

    async def get(self, img_unique_id: str) -> Image | None:
        """An image with its classes loaded."""
        stmt = (
            select(Image)
            .options(selectinload(Image.classes))
            .where(Image.img_unique_id == img_unique_id)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get_many(self, img_unique_ids: Sequence[str]) -> dict[str, Image]:
        """Images by id, in one query (classes not loaded); unknown ids are absent."""
        if not img_unique_ids:
            return {}
        stmt = select(Image).where(Image.img_unique_id.in_(img_unique_ids))
        return {
            image.img_unique_id: image for image in (await self.session.execute(stmt)).scalars()
        }

    async def exists(self, img_unique_id: str) -> bool:
        """Whether an image row exists."""
        stmt = select(exists().where(Image.img_unique_id == img_unique_id))
        return bool((await self.session.execute(stmt)).scalar())

    async def classes_with_regions(self, img_unique_id: str) -> Sequence[DefectClass]:
        """The classes of an image, each with its regions, ordered by class then region."""
        stmt = (
            select(DefectClass)
            .options(selectinload(DefectClass.regions))
            .where(DefectClass.img_unique_id == img_unique_id)
            .order_by(DefectClass.class_id, DefectClass.class_name)
        )
        return (await self.session.execute(stmt)).scalars().all()

    def _image_filter(self, stmt: Select[Any], filters: ImageFilters) -> Select[Any]:
        if filters.start_date:
            stmt = stmt.where(Image.timestamp >= day_start(filters.start_date))
        if filters.end_date:
            stmt = stmt.where(Image.timestamp < day_start(filters.end_date + timedelta(days=1)))
        if filters.class_name:
            stmt = stmt.where(
                exists().where(
                    and_(
                        DefectClass.img_unique_id == Image.img_unique_id,
                        DefectClass.class_name == filters.class_name,
                    )
                )
            )
        if filters.batch_id:
            stmt = stmt.where(
                exists().where(
                    and_(
                        Inspection.img_unique_id == Image.img_unique_id,
                        Inspection.batch_id == filters.batch_id,
                    )
                )
            )
        if filters.min_defects is not None:
            total = (
                select(func.coalesce(func.sum(DefectClass.total_regions), 0))
                .where(DefectClass.img_unique_id == Image.img_unique_id)
                .scalar_subquery()
            )
            stmt = stmt.where(total >= filters.min_defects)
        return stmt

    async def list_page(
        self, filters: ImageFilters, offset: int, limit: int
    ) -> tuple[int, list[tuple[Any, ...]]]:
        """A page of images with the number of all matching ones.

        Returns:
            (total matching, rows as `page` returns them).
        """
        return await self.count(filters), await self.page(filters, offset, limit)

    async def count(self, filters: ImageFilters) -> int:
        """Images matching `filters`."""
        total_stmt = self._image_filter(select(func.count()).select_from(Image), filters)
        return int((await self.session.execute(total_stmt)).scalar_one())

    async def page(self, filters: ImageFilters, offset: int, limit: int) -> list[tuple[Any, ...]]:
        """A page of images, newest first, with defect counts, batch and original name.

        Returns:
            Rows of (Image, defect_classes dict | None, batch_id, original filename).
        """
        page_ids = (
            self._image_filter(select(Image.img_unique_id, Image.timestamp), filters)  # type: ignore[arg-type]
            .order_by(Image.timestamp.desc(), Image.img_unique_id.desc())
            .offset(offset)
            .limit(limit)
            .subquery()
        )
        counts = (
            select(
                DefectClass.img_unique_id,
                func.jsonb_object_agg(DefectClass.class_name, DefectClass.total_regions).label(
                    "classes"
                ),
            )
            .where(DefectClass.img_unique_id.in_(select(page_ids.c.img_unique_id)))
            .group_by(DefectClass.img_unique_id)
            .subquery()
        )
        stmt = (
            select(Image, counts.c.classes, Inspection.batch_id, Inspection.original_filename)
            .join(page_ids, page_ids.c.img_unique_id == Image.img_unique_id)
            .outerjoin(counts, counts.c.img_unique_id == Image.img_unique_id)
            .outerjoin(Inspection, Inspection.img_unique_id == Image.img_unique_id)
            .order_by(Image.timestamp.desc(), Image.img_unique_id.desc())
        )
        return [tuple(row) for row in (await self.session.execute(stmt)).all()]

    async def query_defects(
        self, filters: DefectFilters, offset: int, limit: int
    ) -> tuple[int, list[tuple[Any, ...]]]:
        """A page of regions with their class and image time, newest image first.

        Returns:
            (total matching, rows of (Region, class_name, class_id, timestamp)).
        """
        base = (
            select(Region, DefectClass.class_name, DefectClass.class_id, Image.timestamp)
            .join(DefectClass, DefectClass.class_unique_id == Region.class_unique_id)
            .join(Image, Image.img_unique_id == Region.img_unique_id)
        )
        conditions = []
        if filters.class_name:
            conditions.append(DefectClass.class_name == filters.class_name)
        if filters.start_date:
            conditions.append(Image.timestamp >= day_start(filters.start_date))
        if filters.end_date:
            conditions.append(Image.timestamp < day_start(filters.end_date + timedelta(days=1)))
        if filters.min_area is not None:
            conditions.append(Region.area_pixels >= filters.min_area)
        if filters.max_area is not None:
            conditions.append(Region.area_pixels <= filters.max_area)
        if filters.img_unique_id:
            conditions.append(Region.img_unique_id == filters.img_unique_id)
        base = base.where(*conditions)
        total = int(
            (
                await self.session.execute(select(func.count()).select_from(base.subquery()))
            ).scalar_one()
        )
        stmt = (
            base.order_by(
                Image.timestamp.desc(), Region.img_unique_id, DefectClass.class_id, Region.region_id
            )
            .offset(offset)
            .limit(limit)
        )
        return total, [tuple(row) for row in (await self.session.execute(stmt)).all()]

    async def delete(self, img_unique_id: str) -> None:
        """Delete an image; its classes and regions go by ON DELETE CASCADE."""
        await self.session.execute(delete(Image).where(Image.img_unique_id == img_unique_id))

    async def totals(self) -> tuple[int, int, float | None]:
        """(images, regions, mean processing time in seconds) over all images."""
        images, mean = (
            await self.session.execute(
                select(func.count(), func.avg(Image.processing_time_seconds)).select_from(Image)
            )
        ).one()
        regions = (
            await self.session.execute(
                select(func.coalesce(func.sum(DefectClass.total_regions), 0))
            )
        ).scalar_one()
        return int(images), int(regions), _float(mean)

    async def defects_by_class(self) -> list[tuple[Any, ...]]:
        """Per class name: images with it, regions, total area (pixels); most regions first."""
        stmt = (
            select(
                DefectClass.class_name,
                func.count(func.distinct(DefectClass.img_unique_id)),
                func.sum(DefectClass.total_regions),
                func.sum(DefectClass.total_area_pixels),
            )
            .group_by(DefectClass.class_name)
            .order_by(func.sum(DefectClass.total_regions).desc(), DefectClass.class_name)
        )
        return [tuple(row) for row in (await self.session.execute(stmt)).all()]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)

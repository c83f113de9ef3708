"""Every query of the review domain: verdicts, dispositions, their history, the queue
and the review figures of the dashboard.

The current state is one row per region (`region_verdicts`) and per image
(`image_dispositions`); each change also appends a `review_events` row. Queries read
verdicts by primary key (`region_unique_id`) or by image (`ix_region_verdicts_img_unique_id`),
and images through `ix_images_timestamp`, so their cost follows the images asked about,
not the size of the tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, func, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.database import (
    Batch,
    DefectClass,
    Image,
    ImageDisposition,
    Inspection,
    Region,
    RegionVerdict,
    ReviewBoard,
    ReviewEvent,
)
from app.services.boards.repository import ContextFilter, context_condition
from app.services.database.queries import class_name_spellings, day_end, day_start
from app.services.history.dashboard import utc_day
from app.services.models.repository import disagrees
from app.services.review.blind import seen_by


@dataclass(frozen=True)
class ReviewFilters:
    """Which images and regions the queue, its progress and the figures look at: image
    days (inclusive, UTC), batch, model version, board context; `class_name` keeps that
    class's regions."""

    start_date: date | None = None
    end_date: date | None = None
    batch_id: str | None = None
    class_name: str | None = None
    model_version: str | None = None
    context: ContextFilter | None = None
    # Only images on which a shadow/replay answer of this model version disagrees with the
    # primary answer (a region of one that the other lacks; docs/models.md).
    disagreement: str | None = None
    # The reviewer reading the figures (None: unknown): the verdicts and dispositions of
    # the boards they audit or may audit are left out, as if those boards were unreviewed
    # and undecided (app/services/review/blind.py).
    viewer: str | None = None


@dataclass(frozen=True)
class Progress:
    """Images with regions, of which every region has a verdict; regions and verdicts."""

    images: int
    reviewed_images: int
    regions: int
    reviewed_regions: int


class ReviewRepository:
    """Verdicts, dispositions and review events over one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- writes ------------------------------------------------------------------------

    async def region_image(self, region_unique_id: int) -> str | None:
        """The image of a region, or None when no region has this id."""
        stmt = select(Region.img_unique_id).where(Region.region_unique_id == region_unique_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def lock_image(self, img_unique_id: str) -> bool:
        """Locks the image row until the transaction ends (reviews of one board are applied
        one after the other, so each event's `previous` is right); False when no such image."""
        stmt = (
            select(Image.img_unique_id)
            .where(Image.img_unique_id == img_unique_id)
            .with_for_update(key_share=True)  # FOR NO KEY UPDATE
        )
        return (await self.session.execute(stmt)).scalar_one_or_none() is not None

    async def image_exists(self, img_unique_id: str) -> bool:
        """Whether a stored inspection result has this id."""
        stmt = select(exists().where(Image.img_unique_id == img_unique_id))
        return bool((await self.session.execute(stmt)).scalar())

    async def verdict(self, region_unique_id: int) -> RegionVerdict | None:
        """The current verdict of a region."""
        return await self.session.get(RegionVerdict, region_unique_id, populate_existing=True)

    async def disposition(self, img_unique_id: str) -> ImageDisposition | None:
        """The current disposition of an image."""
        return await self.session.get(ImageDisposition, img_unique_id, populate_existing=True)

    async def put_verdict(
        self,
        region_unique_id: int,
        img_unique_id: str,
        verdict: str,
        reviewer: str,
        comment: str | None,
        reason: str | None = None,
    ) -> RegionVerdict:
        """Sets (inserts or replaces) a region's verdict, stamped now."""
        values = {"verdict": verdict, "reviewer": reviewer, "comment": comment, "reason": reason}
        stmt = (
            pg_insert(RegionVerdict)
            .values(region_unique_id=region_unique_id, img_unique_id=img_unique_id, **values)
            .on_conflict_do_update(
                index_elements=[RegionVerdict.region_unique_id],
                set_={**values, "reviewed_at": func.now()},
            )
            .returning(RegionVerdict)
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(stmt)).scalar_one()

    async def recent_batches(self, limit: int) -> Sequence[Batch]:
        """The `limit` newest batches, newest first (walks `ix_batches_created_at`)."""
        stmt = select(Batch).order_by(Batch.created_at.desc(), Batch.batch_id.desc()).limit(limit)
        return (await self.session.execute(stmt)).scalars().all()

    async def remove_verdict(self, region_unique_id: int) -> None:
        """Withdraws a region's verdict (the region is unreviewed again)."""
        await self.session.execute(
            delete(RegionVerdict).where(RegionVerdict.region_unique_id == region_unique_id)
        )

    async def put_disposition(
        self, img_unique_id: str, disposition: str, reviewer: str, comment: str | None
    ) -> ImageDisposition:
        """Sets (inserts or replaces) an image's disposition, stamped now."""
        values = {"disposition": disposition, "reviewer": reviewer, "comment": comment}
        stmt = (
            pg_insert(ImageDisposition)
            .values(img_unique_id=img_unique_id, **values)
            .on_conflict_do_update(
                index_elements=[ImageDisposition.img_unique_id],
                set_={**values, "reviewed_at": func.now()},
            )
            .returning(ImageDisposition)
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(stmt)).scalar_one()

    async def remove_disposition(self, img_unique_id: str) -> None:
        """Withdraws an image's disposition."""
        await self.session.execute(
            delete(ImageDisposition).where(ImageDisposition.img_unique_id == img_unique_id)
        )

    async def add_event(self, event: ReviewEvent) -> None:
        """Appends one change to the history."""
        self.session.add(event)
        await self.session.flush()

    # -- reads -------------------------------------------------------------------------

    async def verdicts_of_image(self, img_unique_id: str) -> dict[int, RegionVerdict]:
        """The verdicts of an image's regions, by region_unique_id."""
        stmt = select(RegionVerdict).where(RegionVerdict.img_unique_id == img_unique_id)
        return {v.region_unique_id: v for v in (await self.session.execute(stmt)).scalars()}

    async def verdicts_of_regions(self, region_ids: Sequence[int]) -> dict[int, RegionVerdict]:
        """The verdicts of these regions (those that have one), by region_unique_id."""
        if not region_ids:
            return {}
        stmt = select(RegionVerdict).where(RegionVerdict.region_unique_id.in_(list(region_ids)))
        return {v.region_unique_id: v for v in (await self.session.execute(stmt)).scalars()}

    async def dispositions_of(self, img_unique_ids: Sequence[str]) -> dict[str, str]:
        """The dispositions of these images (those that have one), by img_unique_id."""
        if not img_unique_ids:
            return {}
        stmt = select(ImageDisposition.img_unique_id, ImageDisposition.disposition).where(
            ImageDisposition.img_unique_id.in_(list(img_unique_ids))
        )
        return {i: d for i, d in (await self.session.execute(stmt)).all()}

    async def board_states(self, img_unique_ids: Sequence[str]) -> dict[str, ReviewBoard]:
        """The `review_boards` rows of these images (kept by triggers: regions reviewed,
        false calls, disposition), by img_unique_id; an image with neither a verdict nor a
        disposition has none. One primary-key lookup per image."""
        if not img_unique_ids:
            return {}
        stmt = select(ReviewBoard).where(ReviewBoard.img_unique_id.in_(list(img_unique_ids)))
        return {b.img_unique_id: b for b in (await self.session.execute(stmt)).scalars()}

    async def verdict_counts(self, img_unique_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Per image (those with verdicts): regions per verdict."""
        if not img_unique_ids:
            return {}
        stmt = (
            select(RegionVerdict.img_unique_id, RegionVerdict.verdict, func.count())
            .where(RegionVerdict.img_unique_id.in_(list(img_unique_ids)))
            .group_by(RegionVerdict.img_unique_id, RegionVerdict.verdict)
        )
        counts: dict[str, dict[str, int]] = {}
        for img_id, verdict, n in (await self.session.execute(stmt)).all():
            counts.setdefault(img_id, {})[verdict] = int(n)
        return counts

    async def reason_counts(self, img_unique_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Per image (those with verdicts given with a reason): regions per reason code."""
        if not img_unique_ids:
            return {}
        stmt = (
            select(RegionVerdict.img_unique_id, RegionVerdict.reason, func.count())
            .where(
                RegionVerdict.img_unique_id.in_(list(img_unique_ids)),
                RegionVerdict.reason.is_not(None),
            )
            .group_by(RegionVerdict.img_unique_id, RegionVerdict.reason)
        )
        counts: dict[str, dict[str, int]] = {}
        for img_id, reason, n in (await self.session.execute(stmt)).all():
            counts.setdefault(img_id, {})[str(reason)] = int(n)
        return counts

    async def events(self, img_unique_id: str, limit: int) -> list[ReviewEvent]:
        """The newest `limit` changes of an image's review, newest first."""
        stmt = (
            select(ReviewEvent)
            .where(ReviewEvent.img_unique_id == img_unique_id)
            .order_by(ReviewEvent.id.desc())
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def image_progress(self, img_unique_id: str) -> tuple[int, int]:
        """(regions, regions with a verdict) of one image."""
        stmt = (
            select(func.count(), func.count(RegionVerdict.region_unique_id))
            .select_from(Region)
            .outerjoin(RegionVerdict, RegionVerdict.region_unique_id == Region.region_unique_id)
            .where(Region.img_unique_id == img_unique_id)
        )
        regions, reviewed = (await self.session.execute(stmt)).one()
        return int(regions), int(reviewed)

    # -- the queue ---------------------------------------------------------------------

    def _image_conditions(self, filters: ReviewFilters) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if filters.start_date:
            conditions.append(Image.timestamp >= day_start(filters.start_date))
        if filters.end_date and (end := day_end(filters.end_date)) is not None:
            conditions.append(Image.timestamp < end)
        if filters.batch_id:
            conditions.append(
                exists().where(
                    Inspection.img_unique_id == Image.img_unique_id,
                    Inspection.batch_id == filters.batch_id,
                )
            )
        if filters.model_version:
            conditions.append(
                exists().where(
                    Inspection.img_unique_id == Image.img_unique_id,
                    Inspection.model_version == filters.model_version,
                )
            )
        if filters.context is not None:
            conditions.append(context_condition(Image.img_unique_id, filters.context))
        if filters.disagreement:
            conditions.append(disagrees(Image.img_unique_id, filters.disagreement))
        return conditions

    @staticmethod
    def _seen(table: Any, filters: ReviewFilters) -> list[ColumnElement[bool]]:
        """Conditions on the verdict or disposition rows of `table` keeping those whose
        board's first review the filters' viewer may see."""
        return seen_by(table.img_unique_id, filters.viewer)

    async def next_unreviewed(
        self, filters: ReviewFilters, after: str | None
    ) -> tuple[str, Any] | None:
        """The oldest image matching `filters` with a region (of the class asked for) that
        has no verdict: (img_unique_id, timestamp), or None when there is none. With
        `after`, the first such image after that one (oldest first), wrapping round to the
        oldest; `after` itself comes only when it is the only one left."""
        unreviewed = select(Region.region_unique_id).where(
            Region.img_unique_id == Image.img_unique_id,
            ~exists().where(RegionVerdict.region_unique_id == Region.region_unique_id),
        )
        if (spellings := await self._spellings(filters)) is not None:
            unreviewed = unreviewed.where(
                exists().where(
                    DefectClass.class_unique_id == Region.class_unique_id,
                    DefectClass.class_name.in_(spellings),
                )
            )
        candidates = select(Image.img_unique_id, Image.timestamp).where(
            *self._image_conditions(replace(filters, batch_id=None)), exists(unreviewed)
        )
        source: Any
        if filters.batch_id:
            # The batch's images by their own index, kept apart (MATERIALIZED) from the
            # ORDER BY ... LIMIT 1: else the planner walks every image oldest first until
            # the batch's come (70-90 ms for the newest batch of 10,000 images; seconds at
            # a million), even with their ids spelled out.
            members = select(Inspection.img_unique_id).where(
                Inspection.batch_id == filters.batch_id
            )
            source = (
                candidates.where(Image.img_unique_id.in_(members))
                .cte("batch_candidates")
                .prefix_with("MATERIALIZED")
            )
        else:
            source = candidates.subquery()
        img_id, stamp = source.c.img_unique_id, source.c.timestamp
        base = select(img_id, stamp).order_by(stamp, img_id).limit(1)
        if after is not None:
            key = select(Image.timestamp, Image.img_unique_id).where(Image.img_unique_id == after)
            row = (await self.session.execute(key)).one_or_none()
            if row is not None:
                later = base.where(tuple_(stamp, img_id) > tuple_(*row))
                found = (await self.session.execute(later)).one_or_none()
                if found is not None:
                    return found[0], found[1]
                others = base.where(img_id != after)
                found = (await self.session.execute(others)).one_or_none()
                if found is not None:
                    return found[0], found[1]
        found = (await self.session.execute(base)).one_or_none()
        return (found[0], found[1]) if found is not None else None

    async def _spellings(self, filters: ReviewFilters) -> list[str] | None:
        """The stored spellings of the class asked for, or None for every class."""
        if not filters.class_name:
            return None
        return await class_name_spellings(self.session, filters.class_name)

    def _per_image(self, filters: ReviewFilters, spellings: list[str] | None) -> Any:
        """Per image with regions (of the classes `spellings`): its UTC day, regions,
        verdicts and `real` verdicts, as a subquery.

        Regions are counted from `classes.total_regions` (a few rows per image) and
        verdicts from `region_verdicts` (only reviewed regions), so the cost follows the
        images and the verdicts of the period, not every region of it.
        """
        calls = (
            select(
                DefectClass.img_unique_id.label("img_unique_id"),
                utc_day(Image.timestamp).label("day"),
                func.sum(DefectClass.total_regions).label("regions"),
            )
            .join(Image, Image.img_unique_id == DefectClass.img_unique_id)
            .where(*self._image_conditions(filters))
            .group_by(DefectClass.img_unique_id, Image.timestamp)
        )
        verdicts = (
            select(
                RegionVerdict.img_unique_id.label("img_unique_id"),
                func.count().label("reviewed"),
                func.count().filter(RegionVerdict.verdict == "real").label("real"),
            )
            .join(Image, Image.img_unique_id == RegionVerdict.img_unique_id)
            .where(*self._image_conditions(filters), *self._seen(RegionVerdict, filters))
            .group_by(RegionVerdict.img_unique_id)
        )
        if spellings is not None:
            calls = calls.where(DefectClass.class_name.in_(spellings))
            verdicts = (
                verdicts.join(Region, Region.region_unique_id == RegionVerdict.region_unique_id)
                .join(DefectClass, DefectClass.class_unique_id == Region.class_unique_id)
                .where(DefectClass.class_name.in_(spellings))
            )
        by_image, reviewed = calls.subquery(), verdicts.subquery()
        return (
            select(
                by_image.c.img_unique_id,
                by_image.c.day,
                by_image.c.regions,
                func.coalesce(reviewed.c.reviewed, 0).label("reviewed"),
                func.coalesce(reviewed.c.real, 0).label("real"),
            )
            .outerjoin(reviewed, reviewed.c.img_unique_id == by_image.c.img_unique_id)
            .subquery()
        )

    async def progress(self, filters: ReviewFilters) -> Progress:
        """How far the review of the images matching `filters` is."""
        per_image = self._per_image(filters, await self._spellings(filters))
        stmt = select(
            func.count(),
            func.count().filter(per_image.c.reviewed >= per_image.c.regions),
            func.coalesce(func.sum(per_image.c.regions), 0),
            func.coalesce(func.sum(per_image.c.reviewed), 0),
        ).select_from(per_image)
        images, reviewed_images, regions, reviewed = (await self.session.execute(stmt)).one()
        return Progress(int(images), int(reviewed_images), int(regions), int(reviewed))

    # -- figures of the dashboard ------------------------------------------------------

    async def images_per_day(self, filters: ReviewFilters) -> list[tuple[date, int, int, int]]:
        """Per UTC day with regions: (day, images with regions, reviewed images — every
        region has a verdict —, reviewed images with no `real` verdict)."""
        per_image = self._per_image(filters, await self._spellings(filters))
        done = per_image.c.reviewed >= per_image.c.regions
        stmt = (
            select(
                per_image.c.day,
                func.count(),
                func.count().filter(done),
                func.count().filter(done, per_image.c.real == 0),
            )
            .group_by(per_image.c.day)
            .order_by(per_image.c.day)
        )
        rows = (await self.session.execute(stmt)).all()
        return [(d, int(n), int(r), int(p)) for d, n, r, p in rows]

    async def verdicts_per_day_and_class(
        self, filters: ReviewFilters
    ) -> list[tuple[date, str, int, int, int, int]]:
        """Per UTC day and class: (day, class, regions, real, false_call, unsure)."""
        spellings = await self._spellings(filters)
        day = utc_day(Image.timestamp).label("day")
        regions = (
            select(day, DefectClass.class_name, func.sum(DefectClass.total_regions))
            .join(Image, Image.img_unique_id == DefectClass.img_unique_id)
            .where(*self._image_conditions(filters))
            .group_by(day, DefectClass.class_name)
        )
        verdicts = (
            select(
                day,
                DefectClass.class_name,
                func.count().filter(RegionVerdict.verdict == "real"),
                func.count().filter(RegionVerdict.verdict == "false_call"),
                func.count().filter(RegionVerdict.verdict == "unsure"),
            )
            .select_from(RegionVerdict)
            .join(Region, Region.region_unique_id == RegionVerdict.region_unique_id)
            .join(DefectClass, DefectClass.class_unique_id == Region.class_unique_id)
            .join(Image, Image.img_unique_id == RegionVerdict.img_unique_id)
            .where(*self._image_conditions(filters), *self._seen(RegionVerdict, filters))
            .group_by(day, DefectClass.class_name)
        )
        if spellings is not None:
            regions = regions.where(DefectClass.class_name.in_(spellings))
            verdicts = verdicts.where(DefectClass.class_name.in_(spellings))
        counts: dict[tuple[date, str], list[int]] = {}
        for d, name, n in (await self.session.execute(regions)).all():
            counts[(d, name)] = [int(n), 0, 0, 0]
        for d, name, real, false_call, unsure in (await self.session.execute(verdicts)).all():
            row = counts.setdefault((d, name), [0, 0, 0, 0])
            row[1:] = [int(real), int(false_call), int(unsure)]
        return [(d, name, n, r, f, u) for (d, name), (n, r, f, u) in sorted(counts.items())]

    async def false_calls_by_reason(self, filters: ReviewFilters) -> dict[str | None, int]:
        """Regions of the period (of the class asked for) whose current verdict is
        `false_call`, per reason code (None: given without one)."""
        stmt = (
            select(RegionVerdict.reason, func.count())
            .join(Image, Image.img_unique_id == RegionVerdict.img_unique_id)
            .where(
                RegionVerdict.verdict == "false_call",
                *self._image_conditions(filters),
                *self._seen(RegionVerdict, filters),
            )
            .group_by(RegionVerdict.reason)
        )
        if (spellings := await self._spellings(filters)) is not None:
            stmt = (
                stmt.join(Region, Region.region_unique_id == RegionVerdict.region_unique_id)
                .join(DefectClass, DefectClass.class_unique_id == Region.class_unique_id)
                .where(DefectClass.class_name.in_(spellings))
            )
        return {r: int(n) for r, n in (await self.session.execute(stmt)).all()}

    async def dispositions_count(self, filters: ReviewFilters) -> dict[str, int]:
        """Images of the period per disposition."""
        stmt = (
            select(ImageDisposition.disposition, func.count())
            .join(Image, Image.img_unique_id == ImageDisposition.img_unique_id)
            .where(*self._image_conditions(filters), *self._seen(ImageDisposition, filters))
            .group_by(ImageDisposition.disposition)
        )
        return {d: int(n) for d, n in (await self.session.execute(stmt)).all()}

"""The stored results' queries: images, defect regions, their filters and figures."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, selectinload

from app.models.database import (
    DefectClass,
    Image,
    ImageDisposition,
    Inspection,
    Region,
    RegionVerdict,
    ReviewBoard,
)
from app.models.model_service import Analysis
from app.models.rollups import (
    ClassesDaily,
    ImagesDaily,
)
from app.services.boards.repository import ContextFilter, context_condition
from app.services.database.queries import (
    bounded_count,
    class_name_spellings,
    day_end,
    day_start,
    driver_connection,
    rollup_day_range,
    sqlalchemy_errors,
)
from app.services.database.region_copy import COPY_REGIONS_SQL, region_copy_data
from app.services.history.cursors import DefectKey, ImageKey
from app.services.review.blind import blind_condition, seen_by


@dataclass(frozen=True)
class ImageFilters:
    """Filters of the image listing; dates are inclusive UTC days."""

    start_date: date | None = None
    end_date: date | None = None
    class_name: str | None = None
    batch_id: str | None = None
    min_defects: int | None = None
    model_version: str | None = None
    # Prefix of the original file name or of the image id, any letter case.
    search: str | None = None
    # `unreviewed`, `reviewed`, `has_false_calls` (see `review_conditions`).
    review_state: str | None = None
    # `pass`, `repair`, `scrap`: the image's current disposition.
    disposition: str | None = None
    # Board context (serial, product, line, side, lot): docs/boards.md.
    context: ContextFilter | None = None
    # The reviewer reading (None: unknown): the boards they audit, or may audit, filter
    # as unreviewed and undecided (app/services/review/blind.py).
    viewer: str | None = None


_ZERO: ColumnElement[int] = literal_column(
    "0"
)  # inline, so the planner matches the partial indexes' predicates


def _board_conditions(
    board: Any, review_state: str | None, disposition: str | None
) -> list[ColumnElement[bool]]:
    """The review filters as conditions on a `review_boards` row (written as the partial
    indexes of migration 20261207_0016 are, so that they serve them)."""
    conditions: list[ColumnElement[bool]] = []
    if review_state == "unreviewed":
        conditions += [board.regions > _ZERO, board.reviewed < board.regions]
    elif review_state == "reviewed":
        conditions += [board.regions > _ZERO, board.reviewed >= board.regions]
    elif review_state == "has_false_calls":
        conditions.append(board.false_calls > _ZERO)
    elif review_state is not None:
        raise ValueError(f"unknown review state {review_state!r}")
    if disposition is not None:
        conditions.append(board.disposition == disposition)
    return conditions


def review_conditions(
    review_state: str | None,
    disposition: str | None,
    img_unique_id: Any,
    viewer: str | None = None,
) -> list[ColumnElement[bool]]:
    """WHERE conditions keeping the images (`img_unique_id`: the outer query's image id
    column) in a review state and/or with a disposition:

    - `unreviewed`: at least one region has no verdict;
    - `reviewed`: at least one region, and every region has a verdict (`real`,
      `false_call` or `unsure`);
    - `has_false_calls`: at least one region has the verdict `false_call`;
    - a disposition: the board's current disposition is that one.

    A board with no region is neither unreviewed nor reviewed (there is nothing to
    verify); it can still have a disposition. Read from `review_boards` (one primary-key
    probe per image; a board without a row has no verdict and no disposition) and, for
    `unreviewed`, `ix_regions_img_unique_id`. The tables are aliased: the outer query may
    join them itself. A listing should rather start from `review_driver`.

    For a `viewer` (the reviewer reading), a board whose first review is hidden from them
    (`blind_condition`: they audit it or may audit it) counts as unreviewed, with no
    false call and no disposition, as the listing then shows it.
    """
    if review_state is None and disposition is None:
        return []
    board = aliased(ReviewBoard)
    if review_state != "unreviewed":
        return [
            exists().where(
                board.img_unique_id == img_unique_id,
                *_board_conditions(board, review_state, disposition),
            ),
            *seen_by(img_unique_id, viewer),
        ]
    region = aliased(Region)
    done = [board.regions > _ZERO, board.reviewed >= board.regions]
    not_done = ~exists().where(board.img_unique_id == img_unique_id, *done)
    conditions = [
        exists().where(region.img_unique_id == img_unique_id),
        not_done if viewer is None else or_(not_done, blind_condition(img_unique_id, viewer)),
    ]
    if disposition is not None:
        other = aliased(ReviewBoard)
        conditions += [
            exists().where(other.img_unique_id == img_unique_id, other.disposition == disposition),
            *seen_by(img_unique_id, viewer),
        ]
    return conditions


@dataclass(frozen=True)
class ReviewDriver:
    """Where a listing filtered by `reviewed`, `has_false_calls` or a disposition starts:
    the `review_boards` rows of that state (`board`, narrowed by `conditions`), walked by
    their partial index in the listing's order (`board.timestamp` equals the image's).
    Walking the images instead and testing each would pass every image of another state
    first: all the unreviewed boards newer than the first reviewed one."""

    board: Any
    conditions: list[ColumnElement[bool]]

    def days(self, start: date | None, end: date | None) -> list[ColumnElement[bool]]:
        """The inclusive UTC days as conditions on the board's timestamp."""
        conditions: list[ColumnElement[bool]] = []
        if start:
            conditions.append(self.board.timestamp >= day_start(start))
        if end and (bound := day_end(end)) is not None:
            conditions.append(self.board.timestamp < bound)
        return conditions


def review_driver(
    review_state: str | None, disposition: str | None, viewer: str | None = None
) -> ReviewDriver | None:
    """The `ReviewDriver` of these filters, or None when the listing should walk the images
    (no review filter, or `unreviewed` alone: most boards are, in practice the newest).
    The boards hidden from `viewer` (see `review_conditions`) are left out."""
    if review_state in (None, "unreviewed") and disposition is None:
        return None
    board = aliased(ReviewBoard)
    conditions = _board_conditions(board, review_state, disposition)
    return ReviewDriver(board, [*conditions, *seen_by(board.img_unique_id, viewer)])


def _like_prefix(value: str) -> str:
    """`value` as a LIKE pattern matching itself at the start (`%`, `_`, `\\` escaped)."""
    return re.sub(r"([\\%_])", r"\\\1", value) + "%"


def search_condition(search: str, img_unique_id: Any, original_filename: Any) -> Any:
    """Rows whose file name or image id starts with `search`, in any letter case.

    Written for the two expression indexes of migration 20261202_0008
    (`lower(original_filename) text_pattern_ops`, `upper(img_unique_id) text_pattern_ops`):
    a prefix LIKE on them is an index range scan, so a search stays fast at a million rows.
    """
    return or_(
        func.lower(original_filename).like(_like_prefix(search.lower())),
        func.upper(img_unique_id).like(_like_prefix(search.upper())),
    )


@dataclass(frozen=True)
class DefectFilters:
    """Filters of the defect-region query; areas in pixels, dates inclusive UTC days."""

    class_name: str | None = None
    start_date: date | None = None
    end_date: date | None = None
    min_area: int | None = None
    max_area: int | None = None
    img_unique_id: str | None = None
    batch_id: str | None = None
    # Of the regions' images, as in `ImageFilters` (see `review_conditions`).
    review_state: str | None = None
    disposition: str | None = None
    context: ContextFilter | None = None
    # As in `ImageFilters`; also blanks the hidden boards' verdicts, reasons and
    # dispositions in the exports.
    viewer: str | None = None


REVIEW_EXACT_UP_TO = 1_000


def _reviewed_rows(rows: Select[Any], reviewed: bool, stamp: Any) -> tuple[Select[Any], int | None]:
    """`rows` to count and the cap, for `bounded_count`: with a review filter (`reviewed`),
    newest first by `stamp` (as the page walks them: where the review queue, oldest
    first, has left the older boards reviewed, the unreviewed ones come at once) and
    REVIEW_EXACT_UP_TO (without one, None: `bounded_count`'s own TOTAL_EXACT_UP_TO)."""
    if not reviewed:
        return rows, None
    return rows.order_by(stamp.desc()), REVIEW_EXACT_UP_TO


def class_counts_of(img_unique_id: Any) -> Any:
    """`{class_name: total_regions}` of one image as a correlated scalar subquery (NULL
    when it has no class row): an index lookup per image, never a scan of all classes."""
    return (
        select(func.jsonb_object_agg(DefectClass.class_name, DefectClass.total_regions))
        .where(DefectClass.img_unique_id == img_unique_id)
        .scalar_subquery()
        .label("classes")
    )


_INSERT_IMAGE_SQL = (
    "INSERT INTO images (img_unique_id, image_height, image_width, processing_time_seconds,"
    " timestamp, input_image_path, result_image_1_path, result_image_2_path,"
    " result_image_3_path) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


# One row per class, in the analysis's order (WITH ORDINALITY), ids returned in that order.
_INSERT_CLASSES_SQL = (
    "INSERT INTO classes (img_unique_id, class_id, class_name, total_regions,"
    " total_area_pixels) SELECT %s, c.class_id, c.class_name, c.total_regions,"
    " c.total_area_pixels FROM unnest(%s::int[], %s::varchar[], %s::int[], %s::bigint[])"
    " WITH ORDINALITY AS c (class_id, class_name, total_regions, total_area_pixels, n)"
    " ORDER BY c.n RETURNING class_unique_id, class_name"
)


def _verdict_join(viewer: str | None) -> ColumnElement[bool]:
    """The ON clause joining a region's first verdict: none on a board whose first review
    is hidden from `viewer` (app/services/review/blind.py), as if it were unreviewed."""
    return and_(
        RegionVerdict.region_unique_id == Region.region_unique_id,
        *seen_by(Region.img_unique_id, viewer),
    )


def _disposition_join(viewer: str | None) -> ColumnElement[bool]:
    """The ON clause joining an image's disposition: none on a board whose first review is
    hidden from `viewer`, as if it were undecided."""
    return and_(
        ImageDisposition.img_unique_id == Image.img_unique_id,
        *seen_by(Image.img_unique_id, viewer),
    )


class ImageRepository:
    """Inspected images with their defect classes and regions."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_result(self, image: Image, analysis: Analysis) -> None:
        """Insert an image, its classes and their regions in three round trips whatever
        the number of regions: the image row, the class rows (one INSERT over `unnest` of
        arrays), and every region in one binary COPY (`region_copy`), in class order then
        the model service's order. Sent through the driver (`driver_connection`); `image`
        stays transient (not in this session).

        Raises:
            sqlalchemy.exc.IntegrityError: the image is stored already (see
                `sqlalchemy_errors`).
        """
        driver = await driver_connection(self.session)
        with sqlalchemy_errors("INSERT INTO images, classes; COPY regions"):
            await driver.execute(
                _INSERT_IMAGE_SQL,
                (
                    image.img_unique_id,
                    image.image_height,
                    image.image_width,
                    image.processing_time_seconds,
                    image.timestamp,
                    image.input_image_path,
                    image.result_image_1_path,
                    image.result_image_2_path,
                    image.result_image_3_path,
                ),
            )
            if not analysis.classes:
                return
            found = list(analysis.classes.items())
            inserted = await driver.execute(
                _INSERT_CLASSES_SQL,
                (
                    image.img_unique_id,
                    [c.class_id for _, c in found],
                    [name for name, _ in found],
                    [c.total_regions for _, c in found],
                    [c.total_area_pixels for _, c in found],
                ),
            )
            ids = {name: class_unique_id for class_unique_id, name in await inserted.fetchall()}
            with_regions = [(ids[name], c.regions) for name, c in found if c.regions]
            if not with_regions:
                return
            data = region_copy_data(image.img_unique_id, with_regions)
            async with driver.cursor() as cursor, cursor.copy(COPY_REGIONS_SQL) as copy:
                await copy.write(data)

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

    async def _spellings(self, class_name: str | None) -> list[str] | None:
        if not class_name:
            return None
        return await class_name_spellings(self.session, class_name)

    def _image_filter(
        self, stmt: Select[Any], filters: ImageFilters, spellings: list[str] | None
    ) -> Select[Any]:
        if filters.start_date:
            stmt = stmt.where(Image.timestamp >= day_start(filters.start_date))
        if filters.end_date and (end := day_end(filters.end_date)) is not None:
            stmt = stmt.where(Image.timestamp < end)
        if spellings is not None:
            stmt = stmt.where(
                exists().where(
                    and_(
                        DefectClass.img_unique_id == Image.img_unique_id,
                        DefectClass.class_name.in_(spellings),
                    )
                )
            )
        ledger = []  # conditions on the image's one `inspections` row
        if filters.batch_id:
            ledger.append(Inspection.batch_id == filters.batch_id)
        if filters.model_version:
            ledger.append(Inspection.model_version == filters.model_version)
        if ledger:
            stmt = stmt.where(
                exists().where(Inspection.img_unique_id == Image.img_unique_id, *ledger)
            )
        if filters.search:
            found = select(Inspection.img_unique_id).where(
                search_condition(
                    filters.search, Inspection.img_unique_id, Inspection.original_filename
                )
            )
            stmt = stmt.where(Image.img_unique_id.in_(found))
        if filters.context is not None:
            stmt = stmt.where(context_condition(Image.img_unique_id, filters.context))
        if filters.min_defects is not None:
            total = (
                select(func.coalesce(func.sum(DefectClass.total_regions), 0))
                .where(DefectClass.img_unique_id == Image.img_unique_id)
                .scalar_subquery()
            )
            stmt = stmt.where(total >= filters.min_defects)
        return stmt.where(
            *review_conditions(
                filters.review_state, filters.disposition, Image.img_unique_id, filters.viewer
            )
        )

    async def list_page(
        self, filters: ImageFilters, offset: int, limit: int, after: ImageKey | None = None
    ) -> tuple[tuple[int, bool], list[tuple[Any, ...]]]:
        """A page of images with the number of all matching ones.

        Returns:
            ((total matching, whether exact) as `total`, rows as `page` returns them).
        """
        return await self.total(filters), await self.page(filters, offset, limit, after)

    async def total(self, filters: ImageFilters) -> tuple[int, bool]:
        """Images matching `filters` and whether that number is exact.

        Dates, one class name and a model version only: exact, summed from the daily
        rollups (one row per day and model version). Otherwise `bounded_count`: exact up to
        TOTAL_EXACT_UP_TO (REVIEW_EXACT_UP_TO with a review filter), else estimated.
        """
        spellings = await self._spellings(filters.class_name)
        # Only the filters the rollups are keyed by (any filter added later falls back).
        # The viewer matters only with a review filter, which the rollups never serve.
        keyed = replace(filters, start_date=None, end_date=None, class_name=None)
        rollup_serves = replace(keyed, model_version=None, viewer=None) == ImageFilters() and (
            spellings is None or len(spellings) <= 1
        )
        if rollup_serves:
            table: Any = ImagesDaily if spellings is None else ClassesDaily
            stmt = select(func.coalesce(func.sum(table.images), 0)).where(
                *rollup_day_range(table.day, filters.start_date, filters.end_date)
            )
            if spellings is not None:
                stmt = stmt.where(ClassesDaily.class_name.in_(spellings))
            if filters.model_version:
                stmt = stmt.where(table.model_version == filters.model_version)
            return int((await self.session.execute(stmt)).scalar_one()), True
        rows, stamp, _ = self._listing(filters, spellings)
        reviewed = filters.review_state is not None or filters.disposition is not None
        return await bounded_count(
            self.session,
            *_reviewed_rows(rows, reviewed, stamp),
        )

    def _listing(
        self, filters: ImageFilters, spellings: list[str] | None
    ) -> tuple[Select[Any], Any, Any]:
        """The ids and timestamps of the images matching `filters` (unordered), and the
        (timestamp, img_unique_id) columns to order and page them by: the images', or,
        with a review filter that has a `ReviewDriver`, its board's."""
        driver = review_driver(filters.review_state, filters.disposition, filters.viewer)
        if driver is None:
            by_image: Any = select(Image.img_unique_id, Image.timestamp)
            return (
                self._image_filter(by_image, filters, spellings),
                Image.timestamp,
                Image.img_unique_id,
            )
        board = driver.board
        stmt: Select[Any] = (
            select(board.img_unique_id.label("img_unique_id"), board.timestamp.label("timestamp"))
            .join(Image, Image.img_unique_id == board.img_unique_id)
            .where(*driver.conditions, *driver.days(filters.start_date, filters.end_date))
        )
        rest = replace(filters, review_state=None, disposition=None)
        return self._image_filter(stmt, rest, spellings), board.timestamp, board.img_unique_id

    async def count(self, filters: ImageFilters) -> int:
        """Images matching `filters`."""
        spellings = await self._spellings(filters.class_name)
        total_stmt = self._image_filter(select(func.count()).select_from(Image), filters, spellings)
        return int((await self.session.execute(total_stmt)).scalar_one())

    async def page(
        self, filters: ImageFilters, offset: int, limit: int, after: ImageKey | None = None
    ) -> list[tuple[Any, ...]]:
        """A page of images, newest first, with defect counts, batch and original name:
        `offset` rows skipped or, with `after` (keyset), the rows after that key.

        Returns:
            Rows of (Image, defect_classes dict | None, batch_id, original filename).
        """
        spellings = await self._spellings(filters.class_name)
        ids, stamp, img_id = self._listing(filters, spellings)
        if after is not None:
            ids = ids.where(tuple_(stamp, img_id) < tuple_(after.timestamp, after.img_unique_id))
        page_ids = ids.order_by(stamp.desc(), img_id.desc()).offset(offset).limit(limit).subquery()
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

    async def defect_conditions(
        self, filters: DefectFilters, *, image_level_only: bool = False
    ) -> list[Any]:
        """The WHERE conditions of the defect-region query, over `regions` joined with
        `classes` and `images` (the one place the defect filters are written; the query
        page and the exports use it).

        Args:
            image_level_only: only the conditions on the image (dates, batch, image id,
                review state, disposition), for a query over `images` alone (the COCO
                export's image list).
        """
        conditions: list[Any] = []
        if filters.start_date:
            conditions.append(Image.timestamp >= day_start(filters.start_date))
        if filters.end_date and (end := day_end(filters.end_date)) is not None:
            conditions.append(Image.timestamp < end)
        if filters.img_unique_id:
            conditions.append(Image.img_unique_id == filters.img_unique_id)
        if filters.batch_id:
            ledger = aliased(Inspection)  # the query may join `inspections` itself
            conditions.append(
                exists().where(
                    ledger.img_unique_id == Image.img_unique_id,
                    ledger.batch_id == filters.batch_id,
                )
            )
        conditions += review_conditions(
            filters.review_state, filters.disposition, Image.img_unique_id, filters.viewer
        )
        if filters.context is not None:
            conditions.append(context_condition(Image.img_unique_id, filters.context))
        if image_level_only:
            return conditions
        spellings = await self._spellings(filters.class_name)
        if spellings is not None:
            conditions.append(DefectClass.class_name.in_(spellings))
        if filters.min_area is not None:
            conditions.append(Region.area_pixels >= filters.min_area)
        if filters.max_area is not None:
            conditions.append(Region.area_pixels <= filters.max_area)
        return conditions

    async def query_defects(
        self, filters: DefectFilters, offset: int, limit: int, after: DefectKey | None = None
    ) -> tuple[tuple[int, bool], list[tuple[Any, ...]]]:
        """A page of regions with their class and image time, newest image first:
        `offset` rows skipped or, with `after` (keyset), the rows after that key.

        Returns:
            ((total matching, whether exact) as `defects_total`, rows of (Region,
            class_name, class_id, timestamp)).
        """
        base = (
            select(Region, DefectClass.class_name, DefectClass.class_id, Image.timestamp)
            .join(DefectClass, DefectClass.class_unique_id == Region.class_unique_id)
            .join(Image, Image.img_unique_id == Region.img_unique_id)
        )
        stamp: Any = Image.timestamp
        driver = review_driver(filters.review_state, filters.disposition, filters.viewer)
        if driver is None:
            base = base.where(*await self.defect_conditions(filters))
        else:
            # The boards of that review state, newest first by their partial index, and
            # their regions (see `ReviewDriver`); ordered by the board's timestamp (the
            # image's), so pages and cursors are those of the walk over the images.
            stamp = driver.board.timestamp
            rest = replace(filters, review_state=None, disposition=None)
            base = (
                base.join(driver.board, driver.board.img_unique_id == Region.img_unique_id)
                .where(*driver.conditions, *driver.days(filters.start_date, filters.end_date))
                .where(*await self.defect_conditions(rest))
            )
        stmt = base
        if after is not None:
            stmt = stmt.where(
                stamp <= after.timestamp,
                or_(
                    stamp < after.timestamp,
                    tuple_(
                        Region.img_unique_id,
                        DefectClass.class_id,
                        Region.region_id,
                        Region.region_unique_id,
                    )
                    > tuple_(
                        after.img_unique_id,
                        after.class_id,
                        after.region_id,
                        after.region_unique_id,
                    ),
                ),
            )
        stmt = stmt.order_by(stamp.desc(), *_DEFECT_ORDER[1:]).offset(offset).limit(limit)
        rows = [tuple(row) for row in (await self.session.execute(stmt)).all()]
        return await self.defects_total(filters, base, stamp), rows

    async def defects_total(
        self, filters: DefectFilters, rows: Any, stamp: Any = Image.timestamp
    ) -> tuple[int, bool]:
        """Regions matching `filters` (selected by `rows`) and whether that is exact.

        Dates and one class name only: exact, the daily rollup's sum of
        `classes.total_regions` (which equals the class's region rows: checked before
        insert; one row per day and class is read). Otherwise `bounded_count`: exact up to
        TOTAL_EXACT_UP_TO (REVIEW_EXACT_UP_TO with a review filter), else estimated.
        """
        spellings = await self._spellings(filters.class_name)
        # Only the filters the rollups are keyed by (any filter added later falls back).
        rollup_serves = replace(
            filters, start_date=None, end_date=None, class_name=None, viewer=None
        ) == DefectFilters() and (spellings is None or len(spellings) <= 1)
        if not rollup_serves:
            return await bounded_count(
                self.session,
                *_reviewed_rows(
                    rows, filters.review_state is not None or filters.disposition is not None, stamp
                ),
            )
        stmt = select(func.coalesce(func.sum(ClassesDaily.regions), 0)).where(
            *rollup_day_range(ClassesDaily.day, filters.start_date, filters.end_date)
        )
        if spellings is not None:
            stmt = stmt.where(ClassesDaily.class_name.in_(spellings))
        return int((await self.session.execute(stmt)).scalar_one()), True

    async def stream_defects(
        self, filters: DefectFilters, chunk_rows: int = 1000
    ) -> AsyncIterator[tuple[Any, ...]]:
        """Every region matching `filters` (in the query page's order) with its image and
        class, read through a server-side cursor `chunk_rows` at a time: memory stays
        constant however many rows match. Needs the session to itself while it runs.

        Yields:
            Rows with the columns of `EXPORT_REGION_COLUMNS` (pixels; timestamp UTC), then
            the region's verdict, its reason code and its image's disposition (None when
            not reviewed, or given without a reason).
        """
        stmt = (
            select(
                *_EXPORT_COLUMNS,
                RegionVerdict.verdict,
                RegionVerdict.reason,
                ImageDisposition.disposition,
            )
            .join(DefectClass, DefectClass.class_unique_id == Region.class_unique_id)
            .join(Image, Image.img_unique_id == Region.img_unique_id)
            .outerjoin(Inspection, Inspection.img_unique_id == Image.img_unique_id)
            .outerjoin(RegionVerdict, _verdict_join(filters.viewer))
            .outerjoin(ImageDisposition, _disposition_join(filters.viewer))
            .where(*await self.defect_conditions(filters))
            .order_by(*_DEFECT_ORDER)
            .execution_options(yield_per=chunk_rows)
        )
        result = await self.session.stream(stmt)
        async for row in result:
            yield tuple(row)

    async def defect_class_names(self, filters: DefectFilters) -> list[str]:
        """The distinct class names of the regions matching `filters`, sorted."""
        stmt = (
            select(DefectClass.class_name)
            .join(Region, Region.class_unique_id == DefectClass.class_unique_id)
            .join(Image, Image.img_unique_id == Region.img_unique_id)
            .where(*await self.defect_conditions(filters))
            .distinct()
            .order_by(DefectClass.class_name)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def export_images_after(
        self, filters: DefectFilters, after: tuple[datetime, str] | None, limit: int
    ) -> list[tuple[Image, str | None, str | None]]:
        """Up to `limit` images matching the image-level defect filters (dates, batch,
        image id), newest first, strictly after the (timestamp, img_unique_id) key `after`
        (keyset paging: each page costs the same however deep), with their original
        file name and review disposition (None: none)."""
        stmt = (
            select(Image, Inspection.original_filename, ImageDisposition.disposition)
            .outerjoin(Inspection, Inspection.img_unique_id == Image.img_unique_id)
            .outerjoin(ImageDisposition, _disposition_join(filters.viewer))
            .where(*await self.defect_conditions(filters, image_level_only=True))
            .order_by(Image.timestamp.desc(), Image.img_unique_id.desc())
            .limit(limit)
        )
        if after is not None:
            stmt = stmt.where(tuple_(Image.timestamp, Image.img_unique_id) < tuple_(*after))
        return [(row[0], row[1], row[2]) for row in (await self.session.execute(stmt)).all()]

    async def regions_of_images(
        self, filters: DefectFilters, img_unique_ids: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        """The regions matching `filters` of the images `img_unique_ids`, with their class
        name, ordered by image, class and region: rows of (Region, class_name, class_id,
        verdict or None, reason code or None)."""
        if not img_unique_ids:
            return []
        stmt = (
            select(
                Region,
                DefectClass.class_name,
                DefectClass.class_id,
                RegionVerdict.verdict,
                RegionVerdict.reason,
            )
            .join(DefectClass, DefectClass.class_unique_id == Region.class_unique_id)
            .join(Image, Image.img_unique_id == Region.img_unique_id)
            .outerjoin(RegionVerdict, _verdict_join(filters.viewer))
            .where(*await self.defect_conditions(filters))
            .where(Region.img_unique_id.in_(list(img_unique_ids)))
            .order_by(Region.img_unique_id, DefectClass.class_id, Region.region_id)
        )
        return [tuple(row) for row in (await self.session.execute(stmt)).all()]

    async def delete(self, img_unique_id: str) -> None:
        """Delete an image; its classes and regions go by ON DELETE CASCADE."""
        await self.session.execute(delete(Image).where(Image.img_unique_id == img_unique_id))

    async def totals(self) -> tuple[int, int, float | None]:
        """(images, regions, mean processing time in seconds) over all images, summed from
        the daily rollups (regions: `classes.total_regions`)."""
        images, seconds = (
            await self.session.execute(
                select(
                    func.coalesce(func.sum(ImagesDaily.images), 0),
                    func.sum(ImagesDaily.processing_seconds),
                )
            )
        ).one()
        regions = (
            await self.session.execute(select(func.coalesce(func.sum(ClassesDaily.regions), 0)))
        ).scalar_one()
        return int(images), int(regions), mean_or_none(seconds, images)

    async def defects_by_class(self) -> list[tuple[Any, ...]]:
        """Per class name: images with it, regions, total area (pixels); most regions first
        (from the daily rollup; an image has one `classes` row per class name)."""
        regions = func.sum(ClassesDaily.regions)
        stmt = (
            select(
                ClassesDaily.class_name,
                func.sum(ClassesDaily.images),
                regions,
                func.sum(ClassesDaily.area_pixels),
            )
            .group_by(ClassesDaily.class_name)
            .having(func.sum(ClassesDaily.images) > 0)
            .order_by(regions.desc(), ClassesDaily.class_name)
        )
        return [tuple(row) for row in (await self.session.execute(stmt)).all()]


_DEFECT_ORDER = (
    Image.timestamp.desc(),
    Region.img_unique_id,
    DefectClass.class_id,
    Region.region_id,
    Region.region_unique_id,  # a total order, so keyset pages neither skip nor repeat
)


# The columns of the regions export, in order (see `stream_defects`).
_EXPORT_COLUMNS = (
    Region.region_unique_id,
    Region.img_unique_id,
    Inspection.original_filename,
    Image.timestamp,
    Inspection.batch_id,
    Image.image_width,
    Image.image_height,
    DefectClass.class_id,
    DefectClass.class_name,
    Region.region_id,
    Region.centroid_x,
    Region.centroid_y,
    Region.bbox_x,
    Region.bbox_y,
    Region.bbox_width,
    Region.bbox_height,
    Region.area_pixels,
    Region.perimeter,
    Region.major_axis,
    Region.minor_axis,
    Region.circularity,
    Region.aspect_ratio,
)


EXPORT_REGION_COLUMNS = tuple(column.key for column in _EXPORT_COLUMNS)


def mean_or_none(total: Any, count: Any) -> float | None:
    """total / count, or None when nothing was counted."""
    return float(total) / int(count) if total is not None and count else None

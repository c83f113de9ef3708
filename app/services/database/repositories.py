"""Repositories: every database query of the agent, built from a session.

Services call these and only `flush()`; the caller's unit of work commits.
"""

from __future__ import annotations

import contextlib
import enum
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple

import psycopg
from psycopg import sql
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
    text,
    tuple_,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, selectinload

from app.models.database import (
    AgentProcess,
    Batch,
    DefectClass,
    FileSweep,
    Image,
    ImageDisposition,
    Inspection,
    InspectionStatus,
    Region,
    RegionVerdict,
    ReviewBoard,
)
from app.models.model_service import Analysis
from app.models.rollups import (
    ClassesDaily,
    ImagesDaily,
    TimingsDaily,
)
from app.services.boards.repository import ContextFilter, context_condition
from app.services.database.region_copy import COPY_REGIONS_SQL, region_copy_data
from app.services.history.cursors import DefectKey, ImageKey

# First key of the advisory locks taken per input hash (the second is the hash's hashtext).
INPUT_HASH_LOCK_SPACE = 0x414F49  # "AOI"
# The session-level advisory lock of the orphan-file sweep (one sweeper at a time).
FILE_SWEEP_LOCK = (0x414F53, 1)  # "AOS"


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


REVIEW_STATES = ("unreviewed", "reviewed", "has_false_calls")
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
    review_state: str | None, disposition: str | None, img_unique_id: Any
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
    """
    if review_state is None and disposition is None:
        return []
    board = aliased(ReviewBoard)
    if review_state != "unreviewed":
        return [
            exists().where(
                board.img_unique_id == img_unique_id,
                *_board_conditions(board, review_state, disposition),
            )
        ]
    region = aliased(Region)
    done = [board.regions > _ZERO, board.reviewed >= board.regions]
    conditions = [
        exists().where(region.img_unique_id == img_unique_id),
        ~exists().where(board.img_unique_id == img_unique_id, *done),
    ]
    if disposition is not None:
        other = aliased(ReviewBoard)
        conditions.append(
            exists().where(other.img_unique_id == img_unique_id, other.disposition == disposition)
        )
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


def review_driver(review_state: str | None, disposition: str | None) -> ReviewDriver | None:
    """The `ReviewDriver` of these filters, or None when the listing should walk the images
    (no review filter, or `unreviewed` alone: most boards are, in practice the newest)."""
    if review_state in (None, "unreviewed") and disposition is None:
        return None
    board = aliased(ReviewBoard)
    return ReviewDriver(board, _board_conditions(board, review_state, disposition))


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


_CLASS_NAME_SPELLINGS = text(
    """
    WITH RECURSIVE names(class_name) AS (
        (SELECT class_name FROM classes ORDER BY class_name LIMIT 1)
        UNION ALL
        SELECT (SELECT c.class_name FROM classes c WHERE c.class_name > n.class_name
                ORDER BY c.class_name LIMIT 1)
        FROM names n WHERE n.class_name IS NOT NULL
    )
    SELECT class_name FROM names
    WHERE class_name IS NOT NULL AND lower(class_name) = lower(:name)
    """
)


async def class_name_spellings(session: AsyncSession, name: str) -> list[str]:
    """The stored spellings of defect class `name` in any letter case (`pi_particle` gives
    `["PI_Particle"]`); empty when no stored class has that name.

    Filters then compare `class_name IN (spellings)`, which uses the class_name index;
    `lower(class_name) = lower(name)` could not (a page of /query/defects on 10,000 images:
    70 ms instead of 0.4 ms). The distinct names are walked through that index one step
    per name ("loose index scan", PostgreSQL wiki): about 0.05 ms.
    """
    rows = await session.execute(_CLASS_NAME_SPELLINGS, {"name": name})
    return list(rows.scalars())


TOTAL_EXACT_UP_TO = 10_000
"""A listing's `total` is counted exactly up to this many rows (a capped count: at most
this many + 1 index entries read); above it, when no rollup gives the exact number, it
is PostgreSQL's planner estimate and `total_is_exact` is false."""


async def planner_rows(session: AsyncSession, stmt: Select[Any]) -> int:
    """PostgreSQL's estimate of the rows `stmt` returns (`EXPLAIN`, no execution; the
    statistics are ANALYZE's, kept by autovacuum), as the PostgreSQL wiki's
    "count estimate" does."""
    connection = await session.connection()
    compiled = stmt.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
    result = await connection.exec_driver_sql(
        "EXPLAIN (FORMAT JSON) " + str(compiled), compiled.params
    )
    plan = result.scalar_one()
    return int(plan[0]["Plan"]["Plan Rows"])


REVIEW_EXACT_UP_TO = 1_000
"""With a `review_state` or `disposition` filter, `total` is counted exactly up to this
many rows only: each candidate image costs a few index probes (no rollup holds review
states), so 10,000 of them would take far longer than a page."""


async def bounded_count(
    session: AsyncSession, rows: Select[Any], up_to: int | None = None
) -> tuple[int, bool]:
    """How many rows `rows` selects, and whether that number is exact.

    Counts at most `up_to` (default TOTAL_EXACT_UP_TO) + 1 rows (in `rows`' order, if it
    has one); past that, answers the planner's estimate (never less than `up_to` + 1,
    which is known) with False.
    """
    up_to = TOTAL_EXACT_UP_TO if up_to is None else up_to
    capped = select(func.count()).select_from(rows.limit(up_to + 1).subquery())
    counted = int((await session.execute(capped)).scalar_one())
    if counted <= up_to:
        return counted, True
    return max(await planner_rows(session, rows.order_by(None)), up_to + 1), False


def _reviewed_rows(rows: Select[Any], reviewed: bool, stamp: Any) -> tuple[Select[Any], int]:
    """`rows` to count and the cap, for `bounded_count`: with a review filter (`reviewed`),
    newest first by `stamp` (as the page walks them: where the review queue, oldest
    first, has left the older boards reviewed, the unreviewed ones come at once) and
    REVIEW_EXACT_UP_TO."""
    if not reviewed:
        return rows, TOTAL_EXACT_UP_TO
    return rows.order_by(stamp.desc()), REVIEW_EXACT_UP_TO


def rollup_day_range(day: Any, start: date | None, end: date | None) -> list[ColumnElement[bool]]:
    """WHERE conditions keeping rollup rows whose UTC `day` is in [start, end]."""
    conditions: list[ColumnElement[bool]] = []
    if start:
        conditions.append(day >= start)
    if end:
        conditions.append(day <= end)
    return conditions


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of `day`."""
    return datetime.combine(day, time.min, tzinfo=UTC)


def day_end(day: date) -> datetime | None:
    """Midnight UTC after `day` (an exclusive upper bound), or None after 9999-12-31,
    the last day Python's `date` has (then nothing is later: no bound is needed)."""
    return None if day == date.max else day_start(day + timedelta(days=1))


def _class_counts(img_unique_id: Any) -> Any:
    """`{class_name: total_regions}` of one image as a correlated scalar subquery (NULL
    when it has no class row): an index lookup per image, never a scan of all classes."""
    return (
        select(func.jsonb_object_agg(DefectClass.class_name, DefectClass.total_regions))
        .where(DefectClass.img_unique_id == img_unique_id)
        .scalar_subquery()
        .label("classes")
    )


class BatchProgressRow(NamedTuple):
    """One image of a batch as `InspectionRepository.batch_progress` reads it (seconds)."""

    img_unique_id: str
    original_filename: str
    status: InspectionStatus
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    waiting_for: str | None
    total_seconds: float | None
    repeat_of: str | None
    processing_time_seconds: float | None
    classes: dict[str, int] | None


# The ledger's column attributes (an object's state also holds relationships).
_LEDGER_COLUMNS = frozenset(column.key for column in Inspection.__table__.columns)


async def driver_connection(session: AsyncSession) -> psycopg.AsyncConnection[Any]:
    """The psycopg connection under `session`'s transaction.

    The write path of every inspection (ledger row, image, classes, regions) sends its
    statements through it directly: the same transaction, without SQLAlchemy's statement
    compilation, cache-key and greenlet hand-offs, which cost about 0.5 ms of CPU per
    statement (docs/performance.md). Statements sent here are plain SQL with psycopg
    parameters; values must be plain Python (an enum as its `.value`). Send them inside
    `sqlalchemy_errors`, so that callers see the errors the session would raise.
    """
    connection = await (await session.connection()).get_raw_connection()
    return connection.driver_connection  # type: ignore[return-value]


@contextlib.contextmanager
def sqlalchemy_errors(statement: str) -> Iterator[None]:
    """Raise psycopg's errors as SQLAlchemy's (`DBAPIError.instance`: a unique violation
    as `IntegrityError`, a lost server as `OperationalError`...), as the session does for
    its own statements: the app's 503 for an unreachable database, the duplicate-store
    path and the hot folder's retry all catch SQLAlchemy's classes.

    Raises:
        sqlalchemy.exc.DBAPIError (a subclass): what psycopg raised, as `orig`.
    """
    try:
        yield
    except psycopg.Error as exc:
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc


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


def _plain(value: Any) -> Any:
    """A value as psycopg should send it (enums by value)."""
    return value.value if isinstance(value, enum.Enum) else value


class InspectionRepository:
    """The upload ledger and batches."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_all(self, inspections: Sequence[Inspection]) -> None:
        """Insert ledger rows (a 100-image batch is one pipelined `executemany`, not 100
        flushes), through the driver (`driver_connection`).

        Each row gets the attributes its object has set; a column left unset takes its
        database default. The objects stay transient (not in this session).
        """
        if not inspections:
            return
        by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for row in inspections:
            values = {k: v for k, v in sa_inspect(row).dict.items() if k in _LEDGER_COLUMNS}
            columns = tuple(sorted(values))
            by_columns.setdefault(columns, []).append(tuple(_plain(values[c]) for c in columns))
        driver = await driver_connection(self.session)
        with sqlalchemy_errors("INSERT INTO inspections"):
            async with driver.cursor() as cursor:
                for columns, rows in by_columns.items():
                    statement = sql.SQL("INSERT INTO inspections ({}) VALUES ({})").format(
                        sql.SQL(", ").join(map(sql.Identifier, columns)),
                        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
                    )
                    await cursor.executemany(statement, rows)

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
        stmt = (
            select(Inspection, _class_counts(Inspection.img_unique_id))
            .where(Inspection.batch_id == batch_id)
            .order_by(Inspection.batch_position, Inspection.img_unique_id)
        )
        rows = (await self.session.execute(stmt)).all()
        return [(row[0], row[1]) for row in rows]

    async def batch_progress(self, batch_id: str) -> tuple[Batch, list[BatchProgressRow]] | None:
        """A batch and where each of its images stands, in upload order, in one query
        (None: no such batch). Plain rows, no ORM objects: this is what a client polling
        a batch asks for again and again, so it is kept cheap; defect counts by class
        come per image from an index lookup."""
        stmt = (
            select(
                Batch.created_at,
                Batch.total_images,
                Batch.rejected_files,
                Inspection.img_unique_id,
                Inspection.original_filename,
                Inspection.status,
                Inspection.attempts,
                Inspection.last_error,
                Inspection.next_attempt_at,
                Inspection.waiting_for,
                Inspection.total_seconds,
                Inspection.repeat_of,
                Image.processing_time_seconds,
                _class_counts(Inspection.img_unique_id),
            )
            .select_from(Batch)
            .outerjoin(Inspection, Inspection.batch_id == Batch.batch_id)
            .outerjoin(Image, Image.img_unique_id == Inspection.img_unique_id)
            .where(Batch.batch_id == batch_id)
            .order_by(Inspection.batch_position, Inspection.img_unique_id)
        )
        rows = (await self.session.execute(stmt)).all()
        if not rows:
            return None
        created_at, total_images, rejected_files = rows[0][:3]
        batch = Batch(
            batch_id=batch_id,
            created_at=created_at,
            total_images=total_images,
            rejected_files=rejected_files,
        )
        items = [BatchProgressRow._make(row[3:]) for row in rows if row[3] is not None]
        return batch, items

    async def mark(self, img_unique_id: str, *, sync_loaded: bool = True, **values: Any) -> None:
        """Update ledger fields of one inspection.

        Args:
            sync_loaded: also set the new values on the row's object if this session has it
                loaded (an ORM UPDATE, `synchronize_session="auto"`). False sends a plain
                UPDATE through the driver (`driver_connection`), about 1 ms of CPU less:
                for a session that has not loaded the row.

        Raises:
            ValueError: with `sync_loaded=False`, a name that is not a ledger column.
        """
        if sync_loaded:
            await self.session.execute(
                update(Inspection).where(Inspection.img_unique_id == img_unique_id).values(**values)
            )
            return
        unknown = set(values) - _LEDGER_COLUMNS
        if unknown:
            raise ValueError(f"not ledger columns: {sorted(unknown)}")
        columns = list(values)
        statement = sql.SQL(
            "UPDATE inspections SET {}, updated_at = now() WHERE img_unique_id = %s"
        )
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = %s").format(sql.Identifier(c)) for c in columns
        )
        driver = await driver_connection(self.session)
        with sqlalchemy_errors("UPDATE inspections"):
            await driver.execute(
                statement.format(assignments),
                [*(_plain(values[c]) for c in columns), img_unique_id],
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

    async def fail_interrupted_single_uploads(self, silent_s: float) -> int:
        """Mark single uploads left `processing` by a stopped agent as failed (input kept).

        A row counts as interrupted only when its owner process has sent no heartbeat for
        `silent_s` seconds (or is unknown and the row itself is that old), by the
        database's clock: a live upload waiting on a slow model service is never touched.

        Returns:
            Rows marked failed.
        """
        alive_after = func.now() - timedelta(seconds=silent_s)
        owner_alive = exists().where(
            AgentProcess.process_id == Inspection.owner_process_id,
            AgentProcess.last_seen >= alive_after,
        )
        result = await self.session.execute(
            update(Inspection)
            .where(
                Inspection.batch_id.is_(None),
                Inspection.status == InspectionStatus.PROCESSING,
                or_(
                    and_(Inspection.owner_process_id.is_not(None), ~owner_alive),
                    and_(
                        Inspection.owner_process_id.is_(None), Inspection.updated_at < alive_after
                    ),
                ),
            )
            .values(
                status=InspectionStatus.FAILED,
                owner_process_id=None,
                error_status_code=503,
                last_error="interrupted: the agent stopped while this image was being inspected;"
                " retry it",
            )
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def stored_input_paths(self, prefix: str) -> set[str]:
        """Input paths (stored form) starting with `prefix` named by a ledger or image row."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        ledger = select(Inspection.input_image_path).where(
            Inspection.input_image_path.like(pattern, escape="\\")
        )
        images = select(Image.input_image_path).where(
            Image.input_image_path.like(pattern, escape="\\")
        )
        rows = await self.session.execute(ledger.union(images))
        return set(rows.scalars())

    async def accepted_days_updated_since(self, since: datetime) -> set[str]:
        """The UTC days (`YYYYMMDD`, the day folders of `Storage.result_prefix`) on which the
        inspections changed at or after `since` were accepted. An inspection is marked
        `processing` before its results are written, so results written since then lie
        in these days' folders, however old the inspection (a retry, a queued batch).
        No index on `updated_at`: one scan of the ledger per sweep of the deployment."""
        day = func.to_char(func.timezone("UTC", Inspection.created_at), "YYYYMMDD")
        rows = await self.session.execute(
            select(day).where(Inspection.updated_at >= since).distinct()
        )
        return set(rows.scalars())

    async def existing_image_ids(self, img_unique_ids: Sequence[str]) -> set[str]:
        """Which of `img_unique_ids` have an `images` row."""
        if not img_unique_ids:
            return set()
        rows = await self.session.execute(
            select(Image.img_unique_id).where(Image.img_unique_id.in_(list(img_unique_ids)))
        )
        return set(rows.scalars())

    async def retry_batch(self, batch_id: str, now: datetime) -> tuple[list[str], list[str]]:
        """Make every failed or waiting image of a batch `pending` again, due now.

        Failed ones need a new job from the caller; waiting ones keep their job, which is
        moved to now.

        Returns:
            (ids that were failed, ids that were waiting for the model service).
        """
        failed = list(
            (
                await self.session.execute(
                    update(Inspection)
                    .where(
                        Inspection.batch_id == batch_id,
                        Inspection.status == InspectionStatus.FAILED,
                    )
                    .values(
                        status=InspectionStatus.PENDING,
                        next_attempt_at=None,
                        waiting_since=None,
                        waiting_for=None,
                        updated_at=now,
                    )
                    .returning(Inspection.img_unique_id)
                    .execution_options(synchronize_session=False)
                )
            ).scalars()
        )
        waiting = list(
            (
                await self.session.execute(
                    update(Inspection)
                    .where(
                        Inspection.batch_id == batch_id,
                        Inspection.status == InspectionStatus.PENDING,
                        Inspection.next_attempt_at.is_not(None),
                    )
                    .values(next_attempt_at=now, updated_at=now)
                    .returning(Inspection.img_unique_id)
                    .execution_options(synchronize_session=False)
                )
            ).scalars()
        )
        if waiting:
            await self.session.execute(
                text(
                    "UPDATE procrastinate_jobs SET scheduled_at = now() WHERE status = 'todo'"
                    " AND args->>'img_unique_id' = ANY(:ids)"
                ),
                {"ids": waiting},
            )
        return failed, waiting

    async def count_by_status(
        self, status: InspectionStatus, filters: ImageFilters | None = None
    ) -> int:
        """Ledger rows with `status` (and the batch / date filters of `filters`)."""
        stmt = self._ledger_filter(
            select(func.count()).select_from(Inspection), status, filters or ImageFilters()
        )
        return int((await self.session.execute(stmt)).scalar_one())

    async def total_by_status(
        self, status: InspectionStatus, filters: ImageFilters
    ) -> tuple[int, bool]:
        """Ledger rows with `status` (and the batch / date filters of `filters`), and
        whether that number is exact (see `bounded_count`)."""
        rows = self._ledger_filter(select(Inspection.img_unique_id), status, filters)
        return await bounded_count(self.session, rows)

    async def page_by_status(
        self,
        status: InspectionStatus,
        filters: ImageFilters,
        offset: int,
        limit: int,
        after: ImageKey | None = None,
    ) -> Sequence[Inspection]:
        """A page of ledger rows with `status`, newest first (dates filter `created_at`),
        skipping `offset` rows or, with `after`, starting after that (created_at,
        img_unique_id) key."""
        stmt = self._ledger_filter(select(Inspection), status, filters)
        if after is not None:
            stmt = stmt.where(
                tuple_(Inspection.created_at, Inspection.img_unique_id)
                < tuple_(after.timestamp, after.img_unique_id)
            )
        stmt = (
            stmt.order_by(Inspection.created_at.desc(), Inspection.img_unique_id.desc())
            .offset(offset)
            .limit(limit)
        )
        return (await self.session.execute(stmt)).scalars().all()

    def _ledger_filter(
        self, stmt: Select[Any], status: InspectionStatus, filters: ImageFilters
    ) -> Select[Any]:
        stmt = stmt.where(Inspection.status == status)
        if filters.start_date:
            stmt = stmt.where(Inspection.created_at >= day_start(filters.start_date))
        if filters.end_date:
            stmt = stmt.where(
                Inspection.created_at < day_start(filters.end_date + timedelta(days=1))
            )
        if filters.batch_id:
            stmt = stmt.where(Inspection.batch_id == filters.batch_id)
        if filters.context is not None:
            stmt = stmt.where(context_condition(Inspection.img_unique_id, filters.context))
        if filters.search:
            stmt = stmt.where(
                search_condition(
                    filters.search, Inspection.img_unique_id, Inspection.original_filename
                )
            )
        return stmt

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
        """Number of ledger rows per status other than `succeeded` (absent: none).

        `succeeded` rows are the stored images (see `ImageRepository.totals`); leaving
        them out keeps this an index scan of the few unfinished and failed rows.
        """
        unfinished = [s for s in InspectionStatus if s != InspectionStatus.SUCCEEDED]
        rows = await self.session.execute(
            select(Inspection.status, func.count())
            .where(Inspection.status.in_(unfinished))
            .group_by(Inspection.status)
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
        """Mean model-service round trip and mean end-to-end time of successes, seconds
        (from the daily rollup: sums and counts of the non-null values)."""
        row = (
            await self.session.execute(
                select(
                    func.sum(TimingsDaily.model_service_seconds),
                    func.sum(TimingsDaily.model_service_n),
                    func.sum(TimingsDaily.total_seconds),
                    func.sum(TimingsDaily.total_n),
                )
            )
        ).one()
        return _mean(row[0], row[1]), _mean(row[2], row[3])

    async def count_batches(self) -> int:
        """Number of batches."""
        return int(
            (await self.session.execute(select(func.count()).select_from(Batch))).scalar_one()
        )


class AgentProcessRepository:
    """The heartbeats of running agent and worker processes."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def beat(self, process_id: str, hostname: str, pid: int) -> None:
        """Record that the process is alive now (inserting its row if missing)."""
        stmt = pg_insert(AgentProcess).values(process_id=process_id, hostname=hostname, pid=pid)
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[AgentProcess.process_id], set_={"last_seen": func.now()}
            )
        )

    async def is_alive(self, process_id: str, silent_s: float) -> bool:
        """Whether the process has beaten within the last `silent_s` seconds (DB clock)."""
        stmt = select(
            exists().where(
                AgentProcess.process_id == process_id,
                AgentProcess.last_seen >= func.now() - timedelta(seconds=silent_s),
            )
        )
        return bool((await self.session.execute(stmt)).scalar())

    async def remove(self, process_id: str) -> None:
        """Forget a process (it stopped cleanly)."""
        await self.session.execute(
            delete(AgentProcess).where(AgentProcess.process_id == process_id)
        )

    async def forget_silent(self, silent_s: float) -> int:
        """Delete the rows of processes silent for `silent_s` seconds; returns how many."""
        result = await self.session.execute(
            delete(AgentProcess).where(
                AgentProcess.last_seen < func.now() - timedelta(seconds=silent_s)
            )
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class FileSweepState(NamedTuple):
    """The deployment's last orphan-file sweep (None: never), and the database's `now`."""

    sweep: FileSweep | None
    now: datetime


class FileSweepRepository:
    """The record and the lock of the deployment-wide orphan-file sweep.

    The lock is a session-level advisory lock, held by the database connection that took
    it until `unlock` or until that connection ends (a killed process frees it): the
    session must stay on one connection, i.e. be bound to one the caller holds for the
    whole sweep (`AsyncSession(bind=connection)`), not a pooled session that gives its
    connection back at each commit.
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def try_lock(self) -> bool:
        """Take the sweep's lock if no other connection holds it; whether it was taken."""
        stmt = select(func.pg_try_advisory_lock(*FILE_SWEEP_LOCK))
        return bool((await self.session.execute(stmt)).scalar())

    async def unlock(self) -> None:
        """Release the sweep's lock taken by `try_lock` on this connection."""
        await self.session.execute(select(func.pg_advisory_unlock(*FILE_SWEEP_LOCK)))

    async def state(self, name: str) -> FileSweepState:
        """The sweep's row (None before the first sweep) and the database's clock."""
        sweep = await self.session.get(FileSweep, name, populate_existing=True)
        now = (await self.session.execute(select(func.now()))).scalar_one()
        return FileSweepState(sweep, now)

    async def started(self, name: str, at: datetime) -> None:
        """Record that a sweep started at `at` (inserting the row on the first one)."""
        stmt = pg_insert(FileSweep).values(name=name, started_at=at)
        await self.session.execute(
            stmt.on_conflict_do_update(index_elements=[FileSweep.name], set_={"started_at": at})
        )

    async def finished(
        self, name: str, horizon: datetime, full_started_at: datetime | None
    ) -> None:
        """Record a completed sweep: every object last changed before `horizon` was checked;
        `full_started_at` when it listed the whole store."""
        values: dict[str, Any] = {"horizon": horizon}
        if full_started_at is not None:
            values["full_started_at"] = full_started_at
        await self.session.execute(update(FileSweep).where(FileSweep.name == name).values(**values))

    async def forget_horizon(self, name: str) -> None:
        """Make the next sweep list the whole store."""
        await self.session.execute(
            update(FileSweep).where(FileSweep.name == name).values(horizon=None)
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
        if filters.batch_id:
            stmt = stmt.where(
                exists().where(
                    and_(
                        Inspection.img_unique_id == Image.img_unique_id,
                        Inspection.batch_id == filters.batch_id,
                    )
                )
            )
        if filters.model_version:
            stmt = stmt.where(
                exists().where(
                    and_(
                        Inspection.img_unique_id == Image.img_unique_id,
                        Inspection.model_version == filters.model_version,
                    )
                )
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
            *review_conditions(filters.review_state, filters.disposition, Image.img_unique_id)
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
        rollup_serves = replace(
            filters, start_date=None, end_date=None, class_name=None, model_version=None
        ) == ImageFilters() and (spellings is None or len(spellings) <= 1)
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
        driver = review_driver(filters.review_state, filters.disposition)
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
            filters.review_state, filters.disposition, Image.img_unique_id
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
        driver = review_driver(filters.review_state, filters.disposition)
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
            filters, start_date=None, end_date=None, class_name=None
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
            .outerjoin(RegionVerdict, RegionVerdict.region_unique_id == Region.region_unique_id)
            .outerjoin(ImageDisposition, ImageDisposition.img_unique_id == Image.img_unique_id)
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
            .outerjoin(ImageDisposition, ImageDisposition.img_unique_id == Image.img_unique_id)
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
            .outerjoin(RegionVerdict, RegionVerdict.region_unique_id == Region.region_unique_id)
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
        return int(images), int(regions), _mean(seconds, images)

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


def _mean(total: Any, count: Any) -> float | None:
    """total / count, or None when nothing was counted."""
    return float(total) / int(count) if total is not None and count else None

"""The upload ledger's queries: `inspections` rows, batches and their progress."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from psycopg import sql
from sqlalchemy import (
    Select,
    and_,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.database import (
    AgentProcess,
    Batch,
    Image,
    Inspection,
    InspectionStatus,
    ModelAnswer,
)
from app.models.rollups import (
    TimingsDaily,
)
from app.services.boards.repository import context_condition
from app.services.database.queries import (
    bounded_count,
    day_start,
    driver_connection,
    sqlalchemy_errors,
)
from app.services.history.cursors import ImageKey
from app.services.history.repository import (
    ImageFilters,
    class_counts_of,
    mean_or_none,
    search_condition,
)

# First key of the advisory locks taken per input hash (the second is the hash's hashtext).
INPUT_HASH_LOCK_SPACE = 0x414F49  # "AOI"
# Ids bound in one `IN (…)` (PostgreSQL takes at most 65,535 parameters a statement).
_IDS_PER_QUERY = 10_000

# The ledgered error of a single upload whose agent stopped while it was being inspected.
INTERRUPTED_ERROR = "interrupted: the agent stopped while this image was being inspected; retry it"


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
            select(Inspection, class_counts_of(Inspection.img_unique_id))
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
                class_counts_of(Inspection.img_unique_id),
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

    async def fail_interrupted_single_uploads(self, silent_s: float) -> list[str]:
        """Mark single uploads left `processing` by a stopped agent as failed (input kept).

        A row counts as interrupted only when its owner process has sent no heartbeat for
        `silent_s` seconds (or is unknown and the row itself is that old), by the
        database's clock: a live upload waiting on a slow model service is never touched.
        Of two sweeps at once, the second waits for the first's row locks and then no
        longer sees the rows `processing` (PostgreSQL re-checks the WHERE of an UPDATE
        on a row changed meanwhile), so each row is failed by exactly one sweep.

        Returns:
            The img_unique_ids this call marked failed (INTERRUPTED_ERROR), for the caller
            to report in the same transaction.
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
                last_error=INTERRUPTED_ERROR,
            )
            .returning(Inspection.img_unique_id)
            .execution_options(synchronize_session=False)
        )
        return sorted(result.scalars())

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

    async def answered_days_since(self, since: datetime) -> set[str]:
        """The UTC days (`YYYYMMDD`, the day folders of `Storage.answers_prefix`: the
        inspection's acceptance day) of the inspections that got a shadow or replay answer
        at or after `since`: the answers written since then lie in these days' folders,
        however old the inspection. No index on `created_at`: one scan of
        `model_answers` per sweep of the deployment."""
        day = func.to_char(func.timezone("UTC", Image.timestamp), "YYYYMMDD")
        rows = await self.session.execute(
            select(day)
            .select_from(ModelAnswer)
            .join(Image, Image.img_unique_id == ModelAnswer.img_unique_id)
            .where(ModelAnswer.created_at >= since)
            .distinct()
        )
        return set(rows.scalars())

    async def named_answer_folders(self, img_unique_ids: Sequence[str]) -> set[str]:
        """The folders (key prefixes ending in `/`) that the shadow and replay answers
        (`model_answers` rows) of `img_unique_ids` name: each row's PNG keys' folder."""
        folders: set[str] = set()
        ids = list(dict.fromkeys(img_unique_ids))
        for start in range(0, len(ids), _IDS_PER_QUERY):
            rows = await self.session.execute(
                select(
                    ModelAnswer.mask_path, ModelAnswer.overlay_path, ModelAnswer.combined_path
                ).where(ModelAnswer.img_unique_id.in_(ids[start : start + _IDS_PER_QUERY]))
            )
            for row in rows:
                folders.update(key.rsplit("/", 1)[0] + "/" for key in row if key and "/" in key)
        return folders

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
        return mean_or_none(row[0], row[1]), mean_or_none(row[2], row[3])

    async def count_batches(self) -> int:
        """Number of batches."""
        return int(
            (await self.session.execute(select(func.count()).select_from(Batch))).scalar_one()
        )

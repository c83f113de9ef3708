"""The orphan-file sweep: files a killed agent left behind, removed once per interval for
the whole deployment.

The agent writes files before the rows that name them (an input is kept a moment before
its ledger row commits; results are written before their `images` row), so a process
killed in between leaves files no row names. Every agent process (API processes and
workers) runs the maintenance loop (`StalledJobReaper`), but only one of them lists the
store in an interval:

- a PostgreSQL **session-level advisory lock** (`FileSweepRepository.try_lock`): one
  process sweeps, the others skip at once (they do not wait); a killed sweeper's lock
  goes with its connection;
- a **record**, the table `file_sweeps` (database clock): the holder of the lock sweeps
  only when the last sweep started `interval_s` or more ago, or, on a process's first
  call, when the last sweep started before this process did (so a restart after a kill
  removes what the killed process left without waiting an interval).

Not the whole store each time: keys are partitioned by the UTC day of acceptance
(`uploads/YYYYMMDD/…`, `results/YYYYMMDD/{id}/…`, see `Storage.input_key` and
`result_prefix`). The record's `horizon` is the cut-off of the last completed sweep:
every object last changed before it was checked then. A later sweep lists only the day
folders that can hold objects written since: the days from the horizon less the grace and
an hour (`LISTING_MARGIN`: uploads in flight, clock skew) up to tomorrow, and for results
also the days of the inspections changed since (a retry or a long-queued batch writes its
results under its old day). The whole store is listed on the first sweep, then once a day
(`FULL_SWEEP_EVERY`), and on demand (`aoi-agent storage sweep`): that also finds what a
retention run or a deletion could not remove in an old day folder.

Scratch files (`.part`) are on each machine's own disk: each process removes its own
(`remove_old_scratch_files`), outside this coordination.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import anyio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.services.inspection.repository import InspectionRepository
from app.services.retention.repository import FileSweepRepository
from app.services.storage import Storage

logger = logging.getLogger(__name__)

# The `file_sweeps` row of this sweep.
ORPHAN_FILES = "orphan_files"
# The whole store is listed at least this often (by one process of the deployment).
FULL_SWEEP_EVERY = timedelta(days=1)
# Day folders listed before the horizon less the grace, and after the database's now:
# an upload being received when its day began, and clocks that disagree.
LISTING_MARGIN = timedelta(hours=1)


@dataclass(frozen=True)
class SweepRun:
    """What one call of `OrphanFileSweep.run_when_due` did.

    Attributes:
        state: `swept`; `not_due` (a sweep started less than the interval ago); or `busy`
            (another process is sweeping now).
        full: the whole store was listed.
        input_days, result_days, answer_days: when not `full`, the day folders
            (`YYYYMMDD`) listed under `uploads/`, `results/` and `answers/`.
        removed: counts removed, `inputs`, `result_folders` and `answer_folders`.
    """

    state: Literal["swept", "not_due", "busy"]
    full: bool = False
    input_days: tuple[str, ...] = ()
    result_days: tuple[str, ...] = ()
    answer_days: tuple[str, ...] = ()
    removed: dict[str, int] = field(default_factory=dict)


def day_folders(first: datetime, last: datetime) -> list[str]:
    """The UTC days from `first` to `last` (inclusive) as `YYYYMMDD`, the names of the day
    folders of `uploads/` and `results/`."""
    day = first.astimezone(UTC).date()
    end = last.astimezone(UTC).date()
    out = []
    while day <= end:
        out.append(f"{day:%Y%m%d}")
        day += timedelta(days=1)
    return out


class OrphanFileSweep:
    """Removes the files no row names (see the module's docstring)."""

    def __init__(self, storage: Storage, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.storage = storage
        self.sessions = sessions

    async def remove_old_scratch_files(self, grace_s: float) -> int:
        """Delete this machine's scratch files (`.part`) older than `grace_s` seconds;
        returns how many."""
        removed = 0
        for path in await self.storage.old_incoming_files(time.time() - grace_s):
            await self.storage.remove_scratch(path)
            removed += 1
        if removed:
            logger.warning("removed orphaned files", extra={"incoming": removed})
        return removed

    async def remove_orphans(
        self,
        older_than: float,
        input_days: Sequence[str] | None = None,
        result_days: Sequence[str] | None = None,
        answer_days: Sequence[str] | None = None,
    ) -> dict[str, int]:
        """Delete the inputs that no ledger or image row names, the result folders that
        no `images` row names and the answer folders (shadow and replay answers) that no
        `model_answers` row names, once last changed before `older_than` (epoch seconds).
        Lists all of `uploads/`, `results/` and `answers/`, or only the day folders
        (`YYYYMMDD`) given.

        Returns:
            Counts removed: `inputs`, `result_folders`, `answer_folders`.

        Raises:
            OSError, StorageUnavailable: the store failed (what was removed stays removed).
        """
        removed = {"inputs": 0, "result_folders": 0, "answer_folders": 0}
        by_day = await self.storage.old_inputs_by_day(older_than, input_days)
        folders = await self.storage.old_result_folders(older_than, result_days)
        answers = await self.storage.old_answer_folders(older_than, answer_days)
        named_inputs: dict[str, set[str]] = {}
        async with self.sessions() as session:
            repo = InspectionRepository(session)
            for prefix in by_day:
                # Older rows may name the same file in another form: compare keys.
                named_inputs[prefix] = {
                    self.storage.key_of(stored)
                    for form in self.storage.stored_forms(prefix)
                    for stored in await repo.stored_input_paths(form)
                }
            named_results = await repo.existing_image_ids(list(folders))
            named_answers = await repo.named_answer_folders(list(answers.values()))
        for prefix, keys in by_day.items():
            unnamed = [key for key in keys if key not in named_inputs[prefix]]
            if unnamed:
                await self.storage.delete(unnamed)
                removed["inputs"] += len(unnamed)
        for img_unique_id, folder in folders.items():
            if img_unique_id not in named_results:
                await self.storage.delete_prefix(folder)
                removed["result_folders"] += 1
        for answer_folder in answers:
            if answer_folder not in named_answers:
                await self.storage.delete_prefix(answer_folder)
                removed["answer_folders"] += 1
        if any(removed.values()):
            logger.warning("removed orphaned files", extra=removed)
        return removed

    async def run_when_due(
        self,
        grace_s: float,
        interval_s: float,
        *,
        running_for_s: float | None = None,
        full: bool = False,
    ) -> SweepRun:
        """Sweep the store if no other process of the deployment is sweeping and none
        started a sweep in the last `interval_s` seconds; skip at once otherwise.

        Args:
            grace_s: only files last changed more than this long ago go (work in flight
                is younger: an input is kept a moment before its row commits).
            interval_s: seconds between two sweeps of the deployment.
            running_for_s: on a process's first call, how long it has been running: the
                sweep is then also due when the last one started before the process did.
            full: list the whole store, even if the last sweep started just now (the CLI).

        Raises:
            OSError, StorageUnavailable: the store failed; the next sweep is due an
                interval later, from the same horizon.
            sqlalchemy.exc.SQLAlchemyError: the database failed.
        """
        engine: AsyncEngine = self.sessions.kw["bind"]
        # One connection held for the whole sweep: the lock belongs to it.
        async with (
            engine.connect() as connection,
            AsyncSession(bind=connection, expire_on_commit=False) as session,
        ):
            sweeps = FileSweepRepository(session)
            locked = await sweeps.try_lock()
            await session.commit()
            if not locked:
                return SweepRun("busy")
            try:
                return await self._run_locked(
                    session, sweeps, grace_s, interval_s, running_for_s, full
                )
            finally:
                with anyio.CancelScope(shield=True):
                    try:
                        await sweeps.unlock()
                        await session.commit()
                    except Exception:
                        # Closing the connection releases the lock with it.
                        logger.exception("orphan-file sweep: could not release its lock")
                        await connection.invalidate()

    async def _run_locked(
        self,
        session: AsyncSession,
        sweeps: FileSweepRepository,
        grace_s: float,
        interval_s: float,
        running_for_s: float | None,
        full: bool,
    ) -> SweepRun:
        last, now = await sweeps.state(ORPHAN_FILES)
        due = (
            full
            or last is None
            or now - last.started_at >= timedelta(seconds=interval_s)
            or (
                running_for_s is not None
                and last.started_at < now - timedelta(seconds=running_for_s)
            )
        )
        if not due:
            await session.commit()
            return SweepRun("not_due")
        full = (
            full
            or last is None
            or last.horizon is None
            or last.full_started_at is None
            or now - last.full_started_at >= FULL_SWEEP_EVERY
        )
        # Recorded first: when the store fails, the next process waits an interval too.
        await sweeps.started(ORPHAN_FILES, now)
        await session.commit()
        grace = timedelta(seconds=grace_s)
        input_days: list[str] | None = None
        result_days: list[str] | None = None
        answer_days: list[str] | None = None
        if not full:
            assert last is not None
            assert last.horizon is not None
            since = last.horizon - grace - LISTING_MARGIN
            input_days = day_folders(since, now + LISTING_MARGIN)
            async with self.sessions() as reader:
                changed = await InspectionRepository(reader).accepted_days_updated_since(since)
                answered = await InspectionRepository(reader).answered_days_since(since)
            result_days = sorted({*input_days, *changed})
            answer_days = sorted({*input_days, *answered})
        removed = await self.remove_orphans(
            time.time() - grace_s, input_days, result_days, answer_days
        )
        await sweeps.finished(ORPHAN_FILES, now - grace, now if full else None)
        await session.commit()
        return SweepRun(
            "swept",
            full,
            tuple(input_days or ()),
            tuple(result_days or ()),
            tuple(answer_days or ()),
            removed,
        )

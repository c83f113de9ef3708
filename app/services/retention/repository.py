"""Queries of retention: which inspections are past their keeping time, and deleting them.

An inspection is a *pass* when it was reviewed as pass (`image_dispositions`) or, not
reviewed, found no defect region; every other finished inspection
(defects found, reviewed as repair or scrap, or failed) is a *defect* one. Inspections
still pending or processing are never chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import (
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.database import (
    FileSweep,
)

Kind = Literal["pass", "defect", "failed"]

# Reviewed as pass wins over what the model found; without a review, no region is a pass.
_NO_DEFECT = (
    "NOT EXISTS (SELECT 1 FROM classes c"
    " WHERE c.img_unique_id = i.img_unique_id AND c.total_regions > 0)"
)
_REVIEWED = (
    "(SELECT d.disposition = 'pass' FROM image_dispositions d"
    " WHERE d.img_unique_id = i.img_unique_id)"
)
_IS_PASS = f"COALESCE({_REVIEWED}, {_NO_DEFECT})"


@dataclass(frozen=True)
class Expired:
    """One inspection past its keeping time.

    Attributes:
        img_unique_id: its id.
        kind: `pass`, `defect` (stored, not a pass) or `failed` (no result stored).
        accepted_at: when it was accepted (UTC); its files are filed under this day.
        input_image_path: the stored input path (relative to the store).
    """

    img_unique_id: str
    kind: Kind
    accepted_at: datetime
    input_image_path: str


class RetentionRepository:
    """Finds and deletes expired inspections; built from a session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def expired(
        self,
        pass_before: datetime | None,
        defect_before: datetime | None,
        limit: int,
        after: tuple[datetime, str] | None = None,
    ) -> list[Expired]:
        """Up to `limit` expired stored inspections and up to `limit` failed ones, oldest
        first: passes accepted before `pass_before`, the others before `defect_before`
        (None: that kind is kept). Stored ones come after `after` (accepted at, id) when
        given, so a run walks past the old inspections it keeps only once."""
        if pass_before is None and defect_before is None:
            return []
        is_pass = _IS_PASS
        after_at, after_id = after if after is not None else (None, None)
        query = text(
            f"""
            SELECT * FROM (
                SELECT i.img_unique_id, CASE WHEN {is_pass} THEN 'pass' ELSE 'defect' END
                       AS kind, i.timestamp AS accepted_at, i.input_image_path
                  FROM images i
                 WHERE i.timestamp < GREATEST(CAST(:pass_before AS timestamptz),
                                              CAST(:defect_before AS timestamptz))
                   AND (CAST(:after_at AS timestamptz) IS NULL
                        OR (i.timestamp, i.img_unique_id)
                           > (CAST(:after_at AS timestamptz), CAST(:after_id AS varchar)))
                   AND CASE WHEN {is_pass} THEN i.timestamp < :pass_before
                            ELSE i.timestamp < :defect_before END
                 ORDER BY i.timestamp, i.img_unique_id
                 LIMIT :limit
            ) stored
            UNION ALL
            SELECT * FROM (
                SELECT l.img_unique_id, 'failed', l.created_at, l.input_image_path
                  FROM inspections l
                 WHERE l.status = 'failed' AND l.created_at < :defect_before
                   AND NOT EXISTS (SELECT 1 FROM images i WHERE i.img_unique_id = l.img_unique_id)
                 ORDER BY l.created_at
                 LIMIT :limit
            ) failed
            """
        ).bindparams(
            pass_before=pass_before,
            defect_before=defect_before,
            limit=limit,
            after_at=after_at,
            after_id=after_id,
        )
        rows = await self.session.execute(query)
        return [Expired(r[0], r[1], r[2], r[3]) for r in rows.all()]

    async def counts(
        self, pass_before: datetime | None, defect_before: datetime | None
    ) -> dict[Kind, int]:
        """How many inspections of each kind are expired (for the dry run)."""
        is_pass = _IS_PASS
        stored = await self.session.execute(
            text(
                f"""
                SELECT count(*) FILTER (WHERE {is_pass} AND i.timestamp < :pass_before),
                       count(*) FILTER (WHERE NOT {is_pass} AND i.timestamp < :defect_before)
                  FROM images i
                 WHERE i.timestamp < GREATEST(CAST(:pass_before AS timestamptz),
                                              CAST(:defect_before AS timestamptz))
                """
            ).bindparams(pass_before=pass_before, defect_before=defect_before)
        )
        passed, defect = stored.one()
        failed = await self.session.scalar(
            text(
                "SELECT count(*) FROM inspections l WHERE l.status = 'failed'"
                " AND l.created_at < :defect_before"
                " AND NOT EXISTS (SELECT 1 FROM images i WHERE i.img_unique_id = l.img_unique_id)"
            ).bindparams(defect_before=defect_before)
        )
        return {"pass": int(passed or 0), "defect": int(defect or 0), "failed": int(failed or 0)}

    async def delete(self, ids: Sequence[str]) -> set[str]:
        """Delete the rows of these inspections (classes, regions and review rows go by
        cascade) and the batches left with no inspection; a row that changed meanwhile
        (a failed one being retried) is kept.

        Returns:
            The ids whose rows are gone (their files may now be removed).
        """
        if not ids:
            return set()
        images = await self.session.execute(
            text(
                "DELETE FROM images WHERE img_unique_id IN :ids RETURNING img_unique_id"
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": list(ids)},
        )
        gone = {r[0] for r in images.all()}
        ledger = await self.session.execute(
            text(
                "DELETE FROM inspections WHERE img_unique_id IN :ids"
                " AND status IN ('succeeded', 'failed')"
                " RETURNING img_unique_id, batch_id"
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": list(ids)},
        )
        rows = ledger.all()
        gone |= {r[0] for r in rows}
        batches = sorted({r[1] for r in rows if r[1] is not None})
        if batches:
            await self.session.execute(
                text(
                    "DELETE FROM batches b WHERE b.batch_id IN :batches AND NOT EXISTS"
                    " (SELECT 1 FROM inspections l WHERE l.batch_id = b.batch_id)"
                ).bindparams(bindparam("batches", expanding=True)),
                {"batches": batches},
            )
        return gone


# The session-level advisory lock of the orphan-file sweep (one sweeper at a time).
FILE_SWEEP_LOCK = (0x414F53, 1)  # "AOS"


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

"""Queries of the system domain: the queue's size for `/metrics`."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import (
    delete,
    exists,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.database import (
    AgentProcess,
)

# Every status procrastinate 3 gives a job (`procrastinate.jobs.Status`); a status with no
# job is reported as 0 so a dashboard's series never disappear.
QUEUE_JOB_STATUSES = ("todo", "doing", "succeeded", "failed", "cancelled", "aborting", "aborted")


class QueueRepository:
    """Reads the procrastinate job table (the agent's queue)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def job_counts(self) -> dict[str, int]:
        """Jobs by status, every queue together. One grouped count: the table holds only
        live jobs and a day of finished ones (finished jobs are pruned, docs/retention.md)."""
        rows = await self.session.execute(
            text("SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY status")
        )
        counts = dict.fromkeys(QUEUE_JOB_STATUSES, 0)
        counts.update({str(status): int(count) for status, count in rows.all()})
        return counts


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

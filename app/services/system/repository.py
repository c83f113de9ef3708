"""Queries of the system domain: the queue's size for `/metrics`."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

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

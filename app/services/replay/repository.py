"""Queries of the replays: runs, their items, claims and progress."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, func, insert, literal, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.database import Image
from app.models.replay_runs import ReplayItem, ReplayRun
from app.services.history.repository import DefectFilters, ImageRepository
from app.services.replay.errors import ClaimLost


@dataclass(frozen=True)
class ReplayCounts:
    """How many items of a run are in each state."""

    pending: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.running + self.done + self.failed

    @property
    def settled(self) -> int:
        """Items done or failed."""
        return self.done + self.failed


# One pending item of a run, locked without waiting on items other runners hold.
_CLAIM = text(
    """
    UPDATE replay_items SET status = 'running', claim_token = :token,
           attempts = attempts + 1, updated_at = now()
    WHERE (run_id, img_unique_id) = (
        SELECT run_id, img_unique_id FROM replay_items
        WHERE run_id = :run_id AND status = 'pending'
        ORDER BY img_unique_id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    RETURNING img_unique_id
    """
)


class ReplayRepository:
    """Replay runs and items over one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create_run(
        self, url: str, selection: dict[str, Any], filters: DefectFilters
    ) -> ReplayRun:
        """A new run over every stored result matching the image-level `filters`, with one
        `pending` item per image (one INSERT ... SELECT); flushed."""
        run = ReplayRun(model_service_url=url, selection=selection, total_items=0)
        self.session.add(run)
        await self.session.flush()
        conditions = await ImageRepository(self.session).defect_conditions(
            filters, image_level_only=True
        )
        chosen = select(literal(run.run_id, BigInteger), Image.img_unique_id).where(*conditions)
        await self.session.execute(
            insert(ReplayItem).from_select(["run_id", "img_unique_id"], chosen)
        )
        # Counted (the driver reports no row count for INSERT ... SELECT).
        total = await self.session.scalar(
            select(func.count()).select_from(ReplayItem).where(ReplayItem.run_id == run.run_id)
        )
        run.total_items = int(total or 0)
        await self.session.flush()
        return run

    async def get(self, run_id: int) -> ReplayRun | None:
        """The run, or None."""
        return await self.session.get(ReplayRun, run_id)

    async def reset_unfinished(self, run_id: int) -> int:
        """Put back to `pending` the run's `running` items (a runner was killed, or is
        still at work: its claim token no longer matches, so its answer is rolled back)
        and its `failed` ones (tried again); returns how many."""
        result = await self.session.execute(
            update(ReplayItem)
            .where(ReplayItem.run_id == run_id, ReplayItem.status.in_(("running", "failed")))
            .values(status="pending", claim_token=None, error=None, updated_at=func.now())
        )
        await self.session.execute(
            update(ReplayRun)
            .where(ReplayRun.run_id == run_id)
            .values(resumed_at=func.now(), finished_at=None)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def release_claims(self, run_id: int, token_prefix: str) -> int:
        """Put back to `pending` the run's `running` items claimed under a token starting
        with `token_prefix` (an earlier run of the same queue job, killed or stopped:
        never a live runner's); returns how many."""
        result = await self.session.execute(
            update(ReplayItem)
            .where(
                ReplayItem.run_id == run_id,
                ReplayItem.status == "running",
                ReplayItem.claim_token.startswith(token_prefix, autoescape=True),
            )
            .values(status="pending", claim_token=None, updated_at=func.now())
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def claim(self, run_id: int, token: str) -> str | None:
        """Mark one pending item `running` under `token` and return its image id; None when
        no pending item is left (or all are locked by other runners' claims)."""
        row = (await self.session.execute(_CLAIM, {"run_id": run_id, "token": token})).first()
        return None if row is None else str(row[0])

    async def mark_done(self, run_id: int, img_unique_id: str, token: str, answer_id: int) -> None:
        """Mark a claimed item `done` with its answer, in the answer's own transaction.

        Raises:
            ClaimLost: the item is no longer claimed under `token` (a resume reset it):
                the caller's transaction must roll back.
        """
        result = await self.session.execute(
            update(ReplayItem)
            .where(
                ReplayItem.run_id == run_id,
                ReplayItem.img_unique_id == img_unique_id,
                ReplayItem.status == "running",
                ReplayItem.claim_token == token,
            )
            .values(status="done", answer_id=answer_id, error=None, updated_at=func.now())
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise ClaimLost(f"replay {run_id}: {img_unique_id} was claimed by another runner")

    async def mark_failed(self, run_id: int, img_unique_id: str, token: str, error: str) -> None:
        """Mark a claimed item `failed` with `error` (nothing when the claim was lost)."""
        await self.session.execute(
            update(ReplayItem)
            .where(
                ReplayItem.run_id == run_id,
                ReplayItem.img_unique_id == img_unique_id,
                ReplayItem.status == "running",
                ReplayItem.claim_token == token,
            )
            .values(status="failed", error=error, updated_at=func.now())
        )

    async def counts(self, run_id: int) -> ReplayCounts:
        """The run's items by state."""
        rows = await self.session.execute(
            select(ReplayItem.status, func.count())
            .where(ReplayItem.run_id == run_id)
            .group_by(ReplayItem.status)
        )
        return ReplayCounts(**{status: int(n) for status, n in rows.all()})

    async def finish_if_settled(self, run_id: int) -> bool:
        """Stamp `finished_at` when no item is pending or running; whether it is."""
        left = await self.session.scalar(
            select(func.count())
            .select_from(ReplayItem)
            .where(ReplayItem.run_id == run_id, ReplayItem.status.in_(("pending", "running")))
        )
        if left:
            return False
        await self.session.execute(
            update(ReplayRun)
            .where(ReplayRun.run_id == run_id, ReplayRun.finished_at.is_(None))
            .values(finished_at=func.now())
        )
        return True

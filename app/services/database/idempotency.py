"""Queries of the `idempotency_keys` table (see `app.services.inspection.idempotency`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.database import IdempotencyKey

PROCESSING = "processing"
DONE = "done"


class IdempotencyRepository:
    """Claims, answers and releases of Idempotency-Key rows."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(
        self, key: str, request_digest: str, lease_until: datetime, expires_at: datetime
    ) -> bool:
        """Take `key` for a new request: insert it, or take over a row that expired or whose
        first request's lease ran out (its agent died). Returns whether the key is ours."""
        stmt = insert(IdempotencyKey).values(
            key=key,
            request_digest=request_digest,
            state=PROCESSING,
            lease_until=lease_until,
            created_at=func.now(),
            expires_at=expires_at,
        )
        stale = (IdempotencyKey.expires_at < func.now()) | (
            (IdempotencyKey.state == PROCESSING) & (IdempotencyKey.lease_until < func.now())
        )
        upsert = stmt.on_conflict_do_update(
            index_elements=[IdempotencyKey.key],
            set_={
                "request_digest": stmt.excluded.request_digest,
                "state": PROCESSING,
                "response_status": None,
                "response_body": None,
                "lease_until": stmt.excluded.lease_until,
                "created_at": func.now(),
                "expires_at": stmt.excluded.expires_at,
            },
            where=stale,
        ).returning(IdempotencyKey.key)
        return (await self.session.execute(upsert)).scalar_one_or_none() is not None

    async def get(self, key: str) -> IdempotencyKey | None:
        """The row of `key`, if it exists and has not expired."""
        stmt = select(IdempotencyKey).where(
            IdempotencyKey.key == key, IdempotencyKey.expires_at >= func.now()
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def store_answer(self, key: str, status_code: int, body: bytes) -> None:
        """Keep the first request's answer for replay."""
        await self.session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == key)
            .values(state=DONE, response_status=status_code, response_body=body)
        )

    async def release(self, key: str) -> None:
        """Free a key whose first request ended without an answer worth replaying."""
        await self.session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.key == key, IdempotencyKey.state == PROCESSING
            )
        )

    async def purge_expired(self) -> int:
        """Delete rows older than their 24 h; returns how many."""
        result = await self.session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.expires_at < func.now())
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

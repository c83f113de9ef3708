"""Queries of the `api_keys` and `web_sessions` tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.database import ApiKey, WebSession


class ApiKeyRepository:
    """Reads and writes `api_keys` rows over one session; the caller commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self, *, name: str, prefix: str, key_hash: str, key_check: str, scope: str
    ) -> ApiKey:
        """Insert a key row and flush it (its id and created_at are then set)."""
        row = ApiKey(name=name, prefix=prefix, key_hash=key_hash, key_check=key_check, scope=scope)
        self.session.add(row)
        await self.session.flush()
        await self.session.refresh(row)
        return row

    async def get(self, key_id: int) -> ApiKey | None:
        """The key with this row id."""
        return await self.session.get(ApiKey, key_id)

    async def by_name(self, name: str) -> ApiKey | None:
        """The key with this name."""
        return await self.session.scalar(select(ApiKey).where(ApiKey.name == name))

    async def by_prefix(self, prefix: str) -> ApiKey | None:
        """The key with this visible prefix."""
        return await self.session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))

    async def all(self) -> list[ApiKey]:
        """Every key, oldest first."""
        return list(await self.session.scalars(select(ApiKey).order_by(ApiKey.id)))

    async def count_active(self) -> int:
        """Keys not revoked."""
        count = await self.session.scalar(
            select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None))
        )
        return int(count or 0)


class WebSessionRepository:
    """Reads and writes `web_sessions` rows over one session; the caller commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, *, token_sha256: bytes, key_id: int, expires_at: datetime) -> WebSession:
        """Insert a session row and flush it."""
        row = WebSession(token_sha256=token_sha256, key_id=key_id, expires_at=expires_at)
        self.session.add(row)
        await self.session.flush()
        return row

    async def active(self, token_sha256: bytes, now: datetime) -> tuple[WebSession, ApiKey] | None:
        """The session with this token hash and its key, when the session has not ended
        or expired and the key is not revoked (one select on the unique token index)."""
        found = await self.session.execute(
            select(WebSession, ApiKey)
            .join(ApiKey, ApiKey.id == WebSession.key_id)
            .where(
                WebSession.token_sha256 == token_sha256,
                WebSession.ended_at.is_(None),
                WebSession.expires_at > now,
                ApiKey.revoked_at.is_(None),
            )
        )
        row = found.first()
        return (row[0], row[1]) if row else None

    async def end(self, token_sha256: bytes, now: datetime) -> int:
        """End the session with this token hash; returns 1 when one was open, else 0."""
        return await self._end(WebSession.token_sha256 == token_sha256, now)

    async def end_all_of_key(self, key_id: int, now: datetime) -> int:
        """End every open session of a key; returns how many."""
        return await self._end(WebSession.key_id == key_id, now)

    async def _end(self, which: ColumnElement[bool], now: datetime) -> int:
        result = await self.session.execute(
            update(WebSession).where(which, WebSession.ended_at.is_(None)).values(ended_at=now)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def delete_expired(self, now: datetime) -> int:
        """Delete the sessions past their expiry (ended or not); returns how many."""
        result = await self.session.execute(delete(WebSession).where(WebSession.expires_at <= now))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

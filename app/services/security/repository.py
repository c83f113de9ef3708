"""Queries of the `api_keys` table."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.database import ApiKey


class ApiKeyRepository:
    """Reads and writes `api_keys` rows over one session; the caller commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, *, name: str, prefix: str, key_hash: str, scope: str) -> ApiKey:
        """Insert a key row and flush it (its id and created_at are then set)."""
        row = ApiKey(name=name, prefix=prefix, key_hash=key_hash, scope=scope)
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

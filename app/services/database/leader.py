"""One process of the deployment does a job: the holder of a PostgreSQL advisory lock.

The CFX publisher and the webhook dispatcher each drain the outbox from exactly one agent
process at a time. `lead` is their loop: on a connection of its own it takes the
job's session-level advisory lock, runs the job while it holds it, and releases it when
the job returns or fails; a process that does not get the lock, or loses its
connection, tries again after `retry_s` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import anyio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

logger = logging.getLogger(__name__)


class AdvisoryLock(Protocol):
    """A repository that takes and releases the job's advisory lock on its session."""

    async def try_lock(self) -> bool:
        """Take the lock if no other session holds it; whether it was taken."""

    async def unlock(self) -> None:
        """Release the lock."""


R = TypeVar("R", bound=AdvisoryLock)


async def lead(
    sessions: async_sessionmaker[AsyncSession],
    repository: Callable[[AsyncSession], R],
    job: Callable[[AsyncSession, R], Awaitable[None]],
    *,
    name: str,
    retry_s: float,
    holding: Callable[[bool], None],
    released: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run `job(session, repository(session))` whenever this process holds the lock, until
    cancelled.

    `holding(True/False)` is told when the lock is taken and given up (for /health);
    `released()` runs after the job ends, shielded from cancellation, before the unlock.
    A database error is logged (as `name`) and the loop tries again after `retry_s`
    seconds; the session lives on one connection for as long as the lock is held, since
    an advisory lock belongs to its connection.

    Raises:
        asyncio.CancelledError: when the task running it is cancelled (at shutdown).
    """
    engine: AsyncEngine = sessions.kw["bind"]
    while True:
        try:
            async with (
                engine.connect() as connection,
                AsyncSession(bind=connection, expire_on_commit=False) as session,
            ):
                lock = repository(session)
                taken = await lock.try_lock()
                await session.commit()
                if taken:
                    holding(True)
                    try:
                        await job(session, lock)
                    finally:
                        holding(False)
                        with anyio.CancelScope(shield=True):
                            if released is not None:
                                await released()
                            with contextlib.suppress(Exception):
                                await lock.unlock()
                                await session.commit()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s: database error; trying again", name)
        await asyncio.sleep(retry_s)

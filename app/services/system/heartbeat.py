"""The heartbeat of one agent process (`agent_processes`).

Every running agent or `aoi-agent worker` has a row refreshed every
`interval_s` seconds. Inspections being processed name their process
(`inspections.owner_process_id`), so the recovery sweep of any process can tell
a live, slow upload from one whose process was killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.services.database.session import unit_of_work
from app.services.system.repository import AgentProcessRepository

logger = logging.getLogger(__name__)


class ProcessHeartbeat:
    """Registers this process and refreshes its `last_seen` until stopped."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], interval_s: float) -> None:
        self.sessions = sessions
        self.interval_s = interval_s
        self.process_id = uuid.uuid4().hex
        self.hostname = socket.gethostname()[:200]
        self.pid = os.getpid()
        self._task: asyncio.Task[None] | None = None

    async def beat(self) -> None:
        """Record that this process is alive now."""
        async with unit_of_work(self.sessions) as session:
            await AgentProcessRepository(session).beat(self.process_id, self.hostname, self.pid)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.beat()
            except Exception:
                logger.exception("heartbeat failed")

    async def start(self) -> None:
        """Write the first beat (so that work started right away has a live owner), then
        beat in the background."""
        await self.beat()
        self._task = asyncio.create_task(self._run(), name="process-heartbeat")

    async def stop(self) -> None:
        """Stop beating and remove this process's row (its unfinished work is then swept)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            async with unit_of_work(self.sessions) as session:
                await AgentProcessRepository(session).remove(self.process_id)
        except Exception:
            logger.warning("could not remove the process heartbeat row", exc_info=True)

"""Replays: every stored input of a selection re-run through another model service, each
answer stored as a `replay` model answer (`run_model_answer`), resumable after a kill.

A run's items (`replay_items`, one per (run, image)) are claimed one at a time with
`FOR UPDATE SKIP LOCKED` (several runners share a run without waiting on each other) and
marked `running` under the runner's claim token. The answer and the item's `done` commit
in ONE transaction (`run_model_answer(in_transaction=...)`): a runner killed at any
moment has either stored both or neither, so resuming (`resume`: `running` and `failed`
items back to `pending`) never asks twice for an image whose answer is stored. A runner
still at work when its run is resumed loses its claims: its answers roll back
(`ClaimLost`), so even then no image gets two answers from one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.errors import ImageNotFound, StoredFileMissing
from app.models.replay_runs import ReplayRun
from app.services.boards.repository import ContextFilter
from app.services.database.session import unit_of_work
from app.services.history.repository import DefectFilters
from app.services.models.answers import SERVICE_ERRORS, ModelServiceClients, run_model_answer
from app.services.replay.errors import ClaimLost, NothingToReplay, ReplayNotFound
from app.services.replay.repository import ReplayCounts, ReplayRepository
from app.services.storage import Storage
from app.utils.text import printable
from app.utils.version import without_userinfo

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.5
"""Least time between two progress reports of a run, seconds."""


@dataclass(frozen=True)
class ReplaySelection:
    """Which stored inputs to replay: every stored inspection result matching all the
    given fields (at least one). Days are inclusive UTC days of the inspection."""

    batch_id: str | None = None
    start_date: date | None = None
    end_date: date | None = None
    product: str | None = None

    def is_empty(self) -> bool:
        """Whether no field is set."""
        return all(v is None for v in vars(self).values())

    def filters(self) -> DefectFilters:
        """The selection as the image-level defect filters."""
        context = ContextFilter(product=self.product) if self.product is not None else None
        return DefectFilters(
            start_date=self.start_date,
            end_date=self.end_date,
            batch_id=self.batch_id,
            context=context,
        )

    def record(self) -> dict[str, Any]:
        """The selection as stored with the run (unset fields left out)."""
        return {
            k: v.isoformat() if isinstance(v, date) else v
            for k, v in vars(self).items()
            if v is not None
        }


@dataclass(frozen=True)
class ReplayState:
    """A run and its items' counts."""

    run: ReplayRun
    counts: ReplayCounts


Progress = Callable[[ReplayCounts], None]


class ReplayService:
    """Creates, resumes and runs replays over one agent's database and store."""

    def __init__(
        self, settings: Settings, sessions: async_sessionmaker[AsyncSession], storage: Storage
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage

    async def create(self, model_url: str, selection: ReplaySelection) -> ReplayState:
        """A new run of every stored result the selection matches, all items pending
        (nothing is sent yet: `run` does that).

        Raises:
            NothingToReplay: (422) no selection given, or it matches no stored result.
        """
        if selection.is_empty():
            raise NothingToReplay(
                "choose the stored inputs to replay: a batch, a date range and/or a product"
            )
        async with unit_of_work(self.sessions) as session:
            repo = ReplayRepository(session)
            run = await repo.create_run(
                without_userinfo(model_url), selection.record(), selection.filters()
            )
            if run.total_items == 0:
                raise NothingToReplay(
                    f"no stored inspection result matches {selection.record()}"
                )  # rolls the run back
            return ReplayState(run, ReplayCounts(pending=run.total_items))

    async def state(self, run_id: int) -> ReplayState:
        """The run and its counts.

        Raises:
            ReplayNotFound: (404) no such run.
        """
        async with self.sessions() as session:
            repo = ReplayRepository(session)
            run = await repo.get(run_id)
            if run is None:
                raise ReplayNotFound(f"no replay run {run_id}")
            return ReplayState(run, await repo.counts(run_id))

    async def resume(self, run_id: int) -> ReplayState:
        """Put the run's `running` (claimed by a runner that was killed or is still at work)
        and `failed` items back to `pending`; `run` then goes on.

        Raises:
            ReplayNotFound: (404) no such run.
        """
        async with unit_of_work(self.sessions) as session:
            repo = ReplayRepository(session)
            if await repo.get(run_id) is None:
                raise ReplayNotFound(f"no replay run {run_id}")
            reset = await repo.reset_unfinished(run_id)
        logger.info("replay resumed", extra={"run_id": run_id, "reset_items": reset})
        return await self.state(run_id)

    async def release_claims(self, run_id: int, token_prefix: str) -> int:
        """Put back to `pending` the items an earlier runner left claimed under a token
        starting with `token_prefix` (see `ReplayRepository.release_claims`); how many."""
        async with unit_of_work(self.sessions) as session:
            return await ReplayRepository(session).release_claims(run_id, token_prefix)

    async def run(
        self,
        run_id: int,
        model_url: str | None = None,
        *,
        concurrency: int = 2,
        progress: Progress | None = None,
        token: str | None = None,
    ) -> ReplayCounts:
        """Send every pending item of the run to the model service until none is left,
        `concurrency` at a time, each answer stored as a `replay` model answer with the
        item marked done in the same transaction; `progress` is called with the counts
        after an item at most every PROGRESS_INTERVAL_S seconds, and once at the end. A
        model-service failure (after the client's own retries), a missing input or a
        deleted inspection marks the item `failed` with the error.

        Args:
            model_url: the model service (with credentials, if it needs them); None: the
                run's stored URL.
            token: this runner's claim token (at most 32 characters); None: a random one.

        Returns:
            The run's counts when no pending item is left.

        Raises:
            ReplayNotFound: (404) no such run.
        """
        state = await self.state(run_id)
        url = model_url or state.run.model_service_url
        token = token or secrets.token_hex(16)
        clients = ModelServiceClients(self.settings, concurrency)
        lock = asyncio.Lock()
        last_report = 0.0

        async def report() -> None:
            # At most every PROGRESS_INTERVAL_S: counting is one scan of the run's items.
            nonlocal last_report
            if progress is None or time.monotonic() - last_report < PROGRESS_INTERVAL_S:
                return
            async with lock, self.sessions() as session:
                last_report = time.monotonic()
                counts = await ReplayRepository(session).counts(run_id)
            progress(counts)

        async def worker() -> None:
            while (img_unique_id := await self._claim(run_id, token)) is not None:
                await self._one(run_id, img_unique_id, token, url, clients)
                await report()

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(max(1, concurrency)):
                    group.create_task(worker())
        finally:
            with contextlib.suppress(Exception):
                await clients.aclose()
        async with unit_of_work(self.sessions) as session:
            repo = ReplayRepository(session)
            await repo.finish_if_settled(run_id)
            counts = await repo.counts(run_id)
        if progress is not None:
            progress(counts)
        return counts

    async def _claim(self, run_id: int, token: str) -> str | None:
        async with unit_of_work(self.sessions) as session:
            return await ReplayRepository(session).claim(run_id, token)

    async def _one(
        self, run_id: int, img_unique_id: str, token: str, url: str, clients: ModelServiceClients
    ) -> None:
        async def mark_done(session: AsyncSession, answer_id: int) -> None:
            await ReplayRepository(session).mark_done(run_id, img_unique_id, token, answer_id)

        try:
            await run_model_answer(
                self.settings,
                self.sessions,
                self.storage,
                img_unique_id,
                url,
                "replay",
                clients=clients,
                record_failure=False,
                in_transaction=mark_done,
            )
        except ClaimLost:
            logger.info(
                "replay item taken over by a resumed run; answer rolled back",
                extra={"run_id": run_id, "img_unique_id": img_unique_id},
            )
        except (*SERVICE_ERRORS, ImageNotFound, StoredFileMissing) as exc:
            error = printable(f"{type(exc).__name__}: {getattr(exc, 'detail', exc)}", 2000)
            async with unit_of_work(self.sessions) as session:
                await ReplayRepository(session).mark_failed(run_id, img_unique_id, token, error)
            logger.warning(
                "replay item failed",
                extra={"run_id": run_id, "img_unique_id": img_unique_id, "error": error},
            )

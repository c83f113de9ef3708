"""Replays started through the admin API run as durable jobs on the queue `replays`
(procrastinate, like the batch images and the shadow answers), one job per run, so a
replay outlives the agent process that started it.

- `POST /api/replays` commits the run, then defers its job (`defer_replay`), with the
  job lock `replay-{run_id}` (never two jobs of one run at once) and the same queueing
  lock (never two waiting).
- A worker of its own runs the queue, `REPLAY_JOBS` job at a time per agent process
  (REPLAY_CONCURRENCY inputs at once each), so a long replay never takes a batch
  image's slot; other runs wait in the queue.
- The job claims items under the token `j{job_id}:{random}`. When it starts, it first puts
  back the items an earlier run of the *same job* left claimed (`release_claims` with the
  prefix `j{job_id}:`): that run is dead, since procrastinate runs a job again only when
  its worker stopped (killed: its heartbeat went silent and `StalledJobReaper` queued it
  again; stopped: below). Items claimed by any other runner (the CLI) are left alone.
- When the agent stops, `ReplayJobs.interrupt` cancels the running replays; each job
  ends with `ReplayInterrupted`, which its retry strategy answers with "again, in a
  second": the job is back in the queue before the worker stops, and the next agent process to start
  a worker goes on with it. The answer being stored when the replay was cancelled rolls
  back (its PNGs are removed), so nothing is answered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.retry import BaseRetryStrategy, RetryDecision

from app.config import Settings
from app.services.replay.errors import ReplayInterrupted, ReplayNotFound, UnstorableCredentials
from app.services.replay.repository import ReplayCounts
from app.services.replay.service import ReplayService
from app.utils.version import without_userinfo

logger = logging.getLogger(__name__)

REPLAY_QUEUE = "replays"
REPLAY_TASK = "run_replay"
REPLAY_JOBS = 1
"""Replay jobs one agent process runs at once (the others wait in the queue)."""
# A job that failed for another reason (the database went away) is run again this many
# times in all, RETRY_BASE_S seconds later and doubling, at most RETRY_MAX_S apart.
MAX_ATTEMPTS = 10
RETRY_BASE_S = 5
RETRY_MAX_S = 300
INTERRUPTED_RETRY_S = 1


def replay_lock(run_id: int) -> str:
    """The job lock and queueing lock of a run's replay job."""
    return f"replay-{run_id}"


def token_prefix(job_id: int) -> str:
    """The prefix of the claim tokens of every run of one queue job."""
    return f"j{job_id}:"


class ReplayRetry(BaseRetryStrategy):
    """Run a replay job again: a second later when the agent stopped it (`ReplayInterrupted`,
    or procrastinate cancelled it at shutdown), never when its run is gone, and for other
    errors up to MAX_ATTEMPTS runs in all with a doubling delay."""

    def get_retry_decision(
        self, *, exception: BaseException, job: procrastinate.jobs.Job
    ) -> RetryDecision | None:
        """The decision for one failed run of the job (None: it stays failed)."""
        if isinstance(exception, (ReplayInterrupted, asyncio.CancelledError)):
            # A second later: the stopping worker is gone before it is due again.
            return RetryDecision(retry_in={"seconds": INTERRUPTED_RETRY_S})
        if isinstance(exception, ReplayNotFound) or job.attempts + 1 >= MAX_ATTEMPTS:
            return None
        wait_s = min(RETRY_MAX_S, RETRY_BASE_S * 2**job.attempts)
        return RetryDecision(retry_in={"seconds": wait_s})


def model_service_url(settings: Settings, stored: str) -> str:
    """The URL to send a run's inputs to: the configured model-service URL (primary or
    shadow, with any credentials) that `stored` (kept without credentials) names, else
    `stored` itself. No credential is written to the jobs or replay tables."""
    wanted = stored.rstrip("/")
    for url in (*settings.model_service_urls, *settings.shadow_urls):
        if without_userinfo(url).rstrip("/") == wanted:
            return url
    return stored


def check_job_url(settings: Settings, url: str) -> None:
    """Refuse a model URL whose credentials a queued job could not find again.

    Raises:
        UnstorableCredentials: (422) `url` has a `user:password@` part and is not one of
            the configured model services (SEGFORMER_SERVICE_URL(S), SHADOW_SERVICE_URLS).
    """
    bare = without_userinfo(url)
    if bare != url and model_service_url(settings, bare).rstrip("/") != url.rstrip("/"):
        raise UnstorableCredentials(
            "a replay started through the API runs as a queued job, which never stores"
            " credentials: give a model service without them, one of SEGFORMER_SERVICE_URL(S)"
            " or SHADOW_SERVICE_URLS (its credentials are taken from there), or use"
            " `aoi-agent replay --model-url`"
        )


class ReplayJobs:
    """The replay jobs this agent process runs (the queue's worker calls `run`)."""

    def __init__(self, service: ReplayService, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self._running: dict[int, asyncio.Task[ReplayCounts]] = {}
        self._stopping = False

    async def run(self, run_id: int, job_id: int) -> ReplayCounts:
        """Run the replay `run_id` as the queue job `job_id` until no item is pending.

        Raises:
            ReplayNotFound: no such run.
            ReplayInterrupted: the agent is stopping (the job runs again later).
        """
        if self._stopping:
            raise ReplayInterrupted(f"replay {run_id}: the agent is stopping")
        prefix = token_prefix(job_id)
        released = await self.service.release_claims(run_id, prefix)
        if released:
            logger.info(
                "replay job goes on after a stop",
                extra={"run_id": run_id, "job_id": job_id, "released_items": released},
            )
        url = model_service_url(
            self.settings, (await self.service.state(run_id)).run.model_service_url
        )
        task = asyncio.create_task(
            self.service.run(
                run_id,
                url,
                concurrency=self.settings.replay_concurrency,
                token=prefix + secrets.token_hex(5),
            ),
            name=f"replay-{run_id}",
        )
        self._running[run_id] = task
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._stopping and task.cancelled() and not (current and current.cancelling()):
                raise ReplayInterrupted(f"replay {run_id}: the agent is stopping") from None
            raise
        finally:
            self._running.pop(run_id, None)

    def running(self, run_id: int) -> bool:
        """Whether this process is running the replay now."""
        return run_id in self._running

    async def interrupt(self) -> None:
        """Stop every replay this process runs (the agent is stopping); their jobs go
        back to the queue (`ReplayRetry`)."""
        self._stopping = True
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def run_replay(context: procrastinate.JobContext, run_id: int) -> None:
    """The replay job: one run, to the end (`ReplayJobs.run`)."""
    jobs: ReplayJobs = context.additional_context["replay_jobs"]
    assert context.job is not None  # a job being run
    assert context.job.id is not None
    counts = await jobs.run(run_id, context.job.id)
    logger.info(
        "replay finished",
        extra={"run_id": run_id, "done": counts.done, "failed": counts.failed},
    )


def register_replay_task(app: procrastinate.App) -> None:
    """Register the replay job on `app`, on its own queue, with its retry strategy."""
    app.task(name=REPLAY_TASK, queue=REPLAY_QUEUE, pass_context=True, retry=ReplayRetry())(
        run_replay
    )


async def defer_replay(app: procrastinate.App, run_id: int) -> bool:
    """Queue the replay job of a committed run; False when one is already waiting."""
    job = app.tasks[REPLAY_TASK].configure(
        lock=replay_lock(run_id), queueing_lock=replay_lock(run_id)
    )
    try:
        await job.defer_async(run_id=run_id)
    except AlreadyEnqueued:
        return False
    return True


async def replay_job_status(app: procrastinate.App, run_id: int) -> str | None:
    """`doing` (a worker runs the run's job), `todo` (it waits in the queue) or None."""
    statuses = {
        job.status
        for job in await app.job_manager.list_jobs_async(task=REPLAY_TASK, lock=replay_lock(run_id))
    }
    for status in ("doing", "todo"):
        if status in statuses:
            return status
    return None

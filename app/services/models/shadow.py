"""Shadow model services (SHADOW_SERVICE_URLS): a sampled share of the inspections
(SHADOW_SAMPLE_RATE) is also answered by each shadow service, after the primary answer
is stored.

The primary inspection only *defers* one durable job per shadow service on the queue
`shadow` (procrastinate, like the batch images), in a background task once its result
has committed: a slow, failing or dead shadow service can neither slow nor fail it. The
jobs run on a worker of their own (SHADOW_CONCURRENCY jobs at once), each calling
`run_model_answer` (role `shadow`). A model-service failure is tried again
SHADOW_MAX_ATTEMPTS times in all, SHADOW_RETRY_BASE_S seconds apart and doubling; the
last failure is stored as a `failed` answer with its error.

Job arguments name the service by its URL without credentials; the full URL (with any
credentials) is looked up in SHADOW_SERVICE_URLS when the job runs, so no secret is
written to the jobs table. A service no longer configured is recorded as `failed`.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import procrastinate
from procrastinate.retry import BaseRetryStrategy, RetryDecision
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.errors import ImageNotFound, StoredFileMissing
from app.services.models.answers import (
    SERVICE_ERRORS,
    ModelServiceClients,
    run_model_answer,
    store_failed_answer,
)
from app.services.storage import Storage
from app.utils.background import BackgroundTaskSet
from app.utils.version import without_userinfo

logger = logging.getLogger(__name__)

SHADOW_QUEUE = "shadow"
SHADOW_TASK = "shadow_answer"


def in_shadow_sample(img_unique_id: str, rate: float) -> bool:
    """Whether an inspection is in the shadow sample of `rate` (0..1): decided by a hash
    of its id, so the same inspections are chosen whatever process inspects them."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    digest = hashlib.sha256(f"shadow:{img_unique_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


class ShadowRetry(BaseRetryStrategy):
    """Retry a shadow job that raised (the model service failed and attempts remain):
    at most `max_attempts` runs in all, `base_s * 2**(n-1)` seconds before run n + 1."""

    def __init__(self, max_attempts: int, base_s: float) -> None:
        self.max_attempts = max_attempts
        self.base_s = base_s

    def get_retry_decision(
        self, *, exception: BaseException, job: procrastinate.jobs.Job
    ) -> RetryDecision | None:
        """Another run in `base_s * 2**attempts` seconds while attempts remain."""
        if job.attempts + 1 >= self.max_attempts or not isinstance(exception, SERVICE_ERRORS):
            return None
        return RetryDecision(retry_in={"seconds": self.base_s * 2**job.attempts})


class ShadowRunner:
    """Runs the shadow jobs of one agent process: one long-lived client per shadow
    service (SHADOW_CONCURRENCY requests in flight each)."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        storage: Storage,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.clients = ModelServiceClients(settings, concurrency=settings.shadow_concurrency)
        self._urls = {without_userinfo(u.rstrip("/") + "/"): u for u in settings.shadow_urls}

    @property
    def services(self) -> list[str]:
        """The shadow services' URLs without credentials (what the jobs name)."""
        return list(self._urls)

    async def run(self, img_unique_id: str, service: str, attempt: int) -> int | None:
        """Store the shadow answer of `service` (a URL without credentials) for one
        inspection; `attempt` counts earlier runs of this job (0: the first).

        Returns:
            The `answer_id`, or None when the inspection was deleted meanwhile.

        Raises:
            ModelServiceUnavailable, ModelServiceBadAnswer, BadImage: the service failed
                and attempts remain (the job is run again later).
        """
        url = self._urls.get(service)
        last = attempt + 1 >= self.settings.shadow_max_attempts
        try:
            if url is None:
                return await store_failed_answer(
                    self.sessions,
                    img_unique_id,
                    "shadow",
                    service,
                    LookupError(f"{service} is no longer in SHADOW_SERVICE_URLS"),
                    0.0,
                )
            return await run_model_answer(
                self.settings,
                self.sessions,
                self.storage,
                img_unique_id,
                url,
                "shadow",
                clients=self.clients,
                record_failure=last,
            )
        except (ImageNotFound, StoredFileMissing) as exc:
            logger.info(
                "shadow answer skipped",
                extra={"img_unique_id": img_unique_id, "service": service, "error": exc.detail},
            )
            return None

    async def aclose(self) -> None:
        """Close the shadow services' clients."""
        await self.clients.aclose()


async def shadow_answer(
    context: procrastinate.JobContext, img_unique_id: str, service: str
) -> None:
    """The shadow job: one inspection, one shadow service (`ShadowRunner.run`)."""
    runner: ShadowRunner = context.additional_context["shadow_runner"]
    attempt = context.job.attempts if context.job is not None else 0
    await runner.run(img_unique_id, service, attempt)


def register_shadow_task(app: procrastinate.App, settings: Settings) -> None:
    """Register the shadow job on `app`, on its own queue, with its retry strategy."""
    app.task(
        name=SHADOW_TASK,
        queue=SHADOW_QUEUE,
        pass_context=True,
        retry=ShadowRetry(settings.shadow_max_attempts, settings.shadow_retry_base_s),
    )(shadow_answer)


class ShadowDeferrer:
    """Defers the shadow jobs of freshly stored inspections, off the primary's path:
    `after_stored` only starts a background task (kept until done), which inserts one
    job per shadow service; an error there is logged, never raised to the inspection."""

    def __init__(self, app: procrastinate.App, settings: Settings) -> None:
        self.app = app
        self.rate = settings.shadow_sample_rate
        self.services = [without_userinfo(u.rstrip("/") + "/") for u in settings.shadow_urls]
        self._tasks = BackgroundTaskSet()

    @property
    def enabled(self) -> bool:
        """Whether any inspection can be sampled."""
        return bool(self.services) and self.rate > 0.0

    def after_stored(self, img_unique_id: str) -> None:
        """Queue the shadow jobs of a stored inspection if it is in the sample."""
        if not self.enabled or not in_shadow_sample(img_unique_id, self.rate):
            return
        self._tasks.start(self._defer(img_unique_id), name="shadow-defer")

    async def _defer(self, img_unique_id: str) -> None:
        try:
            job = self.app.tasks[SHADOW_TASK]
            kwargs: list[dict[str, Any]] = [
                {"img_unique_id": img_unique_id, "service": s} for s in self.services
            ]
            await job.batch_defer_async(*kwargs)
        except Exception:
            logger.exception("could not queue shadow answers", extra={"img": img_unique_id})

    async def drain(self) -> None:
        """Wait for the deferrals in flight (at shutdown)."""
        await self._tasks.drain()

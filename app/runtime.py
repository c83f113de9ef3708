"""The agent's long-lived parts, started and stopped together by the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import procrastinate
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.services.cfx.publisher import CfxPublisher
from app.services.database.session import create_engine, create_session_factory, libpq_conninfo
from app.services.golden.service import GoldenLibrary, GoldenRegistrar
from app.services.inspection.queue import (
    MAINTENANCE_QUEUE,
    QUEUE_NAME,
    StalledJobReaper,
    create_queue,
    defer_inspection_at,
    defer_inspections,
)
from app.services.inspection.workflow import InspectionService
from app.services.model_service.pool import ModelServicePool
from app.services.models.shadow import (
    SHADOW_QUEUE,
    ShadowDeferrer,
    ShadowRunner,
    register_shadow_task,
)
from app.services.replay.queue import REPLAY_JOBS, REPLAY_QUEUE, ReplayJobs, register_replay_task
from app.services.replay.service import ReplayService
from app.services.reports.mail import ReportMailer
from app.services.retention.service import RetentionService
from app.services.spc.alarms import AlarmChecker
from app.services.storage import Storage, open_storage
from app.services.system.heartbeat import ProcessHeartbeat
from app.services.webhooks.dispatcher import WebhookDispatcher

logger = logging.getLogger(__name__)


@dataclass
class AgentRuntime:
    """Database, storage, model-service client, queue and workflow of one agent process."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    storage: Storage
    client: ModelServicePool
    queue: procrastinate.App
    inspections: InspectionService
    retention: RetentionService
    # The shadow model services' jobs (SHADOW_SERVICE_URLS; None when none are set).
    shadow: ShadowRunner | None = None
    # The replay jobs this process's workers run (POST /api/replays).
    replays: ReplayJobs | None = None
    # This process's golden-board library (decoded images, GOLDEN_DIR index).
    golden_library: GoldenLibrary | None = None


def _each(hooks: list[Callable[[str], None]]) -> Callable[[str], None]:
    """One after-store hook that calls each of `hooks`; one that fails is logged and
    does not keep the others from running."""

    def run(img_unique_id: str) -> None:
        for hook in hooks:
            try:
                hook(img_unique_id)
            except Exception:
                logger.exception("after-store hook failed", extra={"img": img_unique_id})

    return run


async def run_worker(runtime: AgentRuntime, concurrency: int) -> None:
    """Run the queue workers until cancelled; failed jobs' images stay in the ledger. The
    replays (`replays` queue, REPLAY_JOBS at once) and, with shadow model services, the
    shadow answers (`shadow` queue, SHADOW_CONCURRENCY jobs at once) have workers of
    their own, so their jobs never take the inspections' slots."""
    async with asyncio.TaskGroup() as group:
        group.create_task(_run_worker(runtime, [QUEUE_NAME, MAINTENANCE_QUEUE], concurrency))
        group.create_task(_run_worker(runtime, [REPLAY_QUEUE], REPLAY_JOBS))
        if runtime.shadow is not None:
            group.create_task(
                _run_worker(runtime, [SHADOW_QUEUE], runtime.settings.shadow_concurrency)
            )


async def _run_worker(runtime: AgentRuntime, queues: list[str], concurrency: int) -> None:
    heartbeat_s = max(1.0, runtime.settings.stalled_job_after_s / 4)
    await runtime.queue.run_worker_async(
        queues=queues,
        concurrency=concurrency,
        additional_context={
            "inspection_service": runtime.inspections,
            "retention_service": runtime.retention,
            "report_mailer": ReportMailer(runtime.settings, runtime.sessions),
            "spc_alarm_checker": AlarmChecker(runtime.settings, runtime.sessions),
            "shadow_runner": runtime.shadow,
            "replay_jobs": runtime.replays,
        },
        install_signal_handlers=False,
        update_heartbeat_interval=heartbeat_s,
        stalled_worker_timeout=runtime.settings.stalled_job_after_s,
        shutdown_graceful_timeout=5.0,
        delete_jobs="successful",
        listen_notify=True,
    )


@contextlib.asynccontextmanager
async def agent_runtime(
    settings: Settings, *, run_worker_in_process: bool | None = None
) -> AsyncIterator[AgentRuntime]:
    """Start everything the agent needs in this process, and stop it on exit.

    Raises:
        RuntimeError: DATABASE_URL or SEGFORMER_SERVICE_URL(S) is not set (`run.py` sets
            both).
    """
    if not settings.database_url or not settings.model_service_urls:
        raise RuntimeError(
            "DATABASE_URL and SEGFORMER_SERVICE_URL (or SEGFORMER_SERVICE_URLS) must be set;"
            " start the agent with"
            " `python run.py`, which starts an embedded database and the reference model"
            " service when they are not"
        )
    storage = open_storage(settings)
    storage.ensure_directories()
    engine = create_engine(settings, settings.database_url)
    sessions = create_session_factory(engine)
    client = ModelServicePool(settings)
    queue = create_queue(
        libpq_conninfo(settings.database_url),
        settings.db_pool_min_size,
        retention_cron=settings.retention_cron if settings.retention_enabled else None,
        keep_finished_jobs_hours=settings.queue_job_retention_hours,
        report_cron=settings.report_schedule or None,
        spc_cron=settings.spc_check_cron or None,
    )
    register_replay_task(queue)
    inspections = InspectionService(settings, storage, client, sessions)
    retention = RetentionService(settings, storage, sessions)
    shadow: ShadowRunner | None = None
    shadow_deferrer: ShadowDeferrer | None = None
    after_stored: list[Callable[[str], None]] = []
    if settings.shadow_urls:
        register_shadow_task(queue, settings)
        shadow = ShadowRunner(settings, sessions, storage)
        shadow_deferrer = ShadowDeferrer(queue, settings)
        after_stored.append(shadow_deferrer.after_stored)
    golden_library = GoldenLibrary(settings, storage, client.decode_limiter, sessions)
    golden_registrar: GoldenRegistrar | None = None
    if settings.golden_register_on_store:
        golden_registrar = GoldenRegistrar(golden_library, inspections, sessions)
        after_stored.append(golden_registrar.after_stored)
    inspections.after_stored = _each(after_stored) if after_stored else None
    runtime = AgentRuntime(
        settings, engine, sessions, storage, client, queue, inspections, retention, shadow
    )
    runtime.golden_library = golden_library
    runtime.replays = ReplayJobs(ReplayService(settings, sessions, storage), settings)
    reaper = StalledJobReaper(
        queue,
        inspections,
        settings.stalled_job_after_s,
        settings.stalled_job_after_s / 3,
        orphan_grace_s=settings.orphan_file_grace_s,
        file_sweep_interval_s=max(60.0, settings.orphan_file_grace_s),
    )
    cfx_publisher = CfxPublisher(settings, sessions) if settings.cfx_broker_url else None
    webhook_dispatcher = WebhookDispatcher(settings, sessions)
    heartbeat = ProcessHeartbeat(sessions, interval_s=max(0.5, settings.stalled_job_after_s / 4))
    worker: asyncio.Task[None] | None = None
    in_process = (
        settings.run_worker_in_process if run_worker_in_process is None else (run_worker_in_process)
    )
    async with queue.open_async():
        inspections.defer = lambda ids: defer_inspections(queue, ids)
        inspections.defer_at = lambda i, when: defer_inspection_at(queue, i, when)
        try:
            await heartbeat.start()
            inspections.process_id = heartbeat.process_id
            reaper.start()
            if cfx_publisher is not None:
                cfx_publisher.start()
            webhook_dispatcher.start()
            if in_process:
                worker = asyncio.create_task(
                    run_worker(runtime, settings.effective_worker_concurrency), name="queue-worker"
                )
            yield runtime
        finally:
            await reaper.stop()
            if cfx_publisher is not None:
                await cfx_publisher.stop()
            await webhook_dispatcher.stop()
            # Replays stop at once and go back to the queue (the worker would wait for them).
            await runtime.replays.interrupt()
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            await heartbeat.stop()
            if shadow_deferrer is not None:
                await shadow_deferrer.drain()
            if golden_registrar is not None:
                await golden_registrar.drain()
            if shadow is not None:
                await shadow.aclose()
            await client.aclose()
            await storage.aclose()
            await engine.dispose()

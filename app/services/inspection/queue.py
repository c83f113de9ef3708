"""The durable job queue (procrastinate on the agent's own PostgreSQL; no extra broker).

Batch images are queued as one `inspect_image` job each, after the commit that
created their ledger rows. Workers run in the agent process (`run.py`) or as
separate processes (`aoi-agent worker`). A worker that dies mid-job stops
sending heartbeats; `StalledJobReaper` finds its jobs and queues them again, so
a killed agent loses no image on restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import procrastinate
from sqlalchemy.exc import InterfaceError, OperationalError

from app.errors import StorageUnavailable

if TYPE_CHECKING:
    from app.services.inspection.workflow import InspectionService
    from app.services.reports.mail import ReportMailer
    from app.services.retention.service import RetentionService
    from app.services.spc.alarms import AlarmChecker

logger = logging.getLogger(__name__)

QUEUE_NAME = "inspections"
TASK_NAME = "inspect_image"
# Periodic upkeep (retention, pruning finished jobs), on its own queue.
MAINTENANCE_QUEUE = "maintenance"
RETENTION_TASK = "apply_retention"
PRUNE_TASK = "prune_queue_jobs"
REPORT_TASK = "mail_report"
SPC_TASK = "check_spc_alarms"
# Hourly, at a minute unlikely to coincide with other hourly jobs.
PRUNE_CRON = "17 * * * *"


async def inspect_image(context: procrastinate.JobContext, img_unique_id: str) -> None:
    """Inspect one accepted batch image; failures end in the ledger, not in a job retry."""
    service: InspectionService = context.additional_context["inspection_service"]
    await service.process_queued(img_unique_id)


async def apply_retention(context: procrastinate.JobContext, timestamp: int) -> None:
    """Periodic: delete the inspections past RETENTION_DAYS_PASS / _DEFECT (or, with
    RETENTION_DRY_RUN, log what would go)."""
    service: RetentionService = context.additional_context["retention_service"]
    await service.run()


async def mail_report(context: procrastinate.JobContext, timestamp: int) -> None:
    """Periodic (REPORT_SCHEDULE): mail the report of the shift or day that ended last
    (docs/spc.md); a mail failure is retried and logged, never raised."""
    mailer: ReportMailer = context.additional_context["report_mailer"]
    await mailer.send_due(timestamp)


async def check_spc_alarms(context: procrastinate.JobContext, timestamp: int) -> None:
    """Periodic (SPC_CHECK_CRON): record the control charts' new and cleared excursions."""
    checker: AlarmChecker = context.additional_context["spc_alarm_checker"]
    await checker.run()


def create_queue(
    conninfo: str,
    max_connections: int,
    *,
    retention_cron: str | None = None,
    keep_finished_jobs_hours: int = 24,
    report_cron: str | None = None,
    spc_cron: str | None = None,
) -> procrastinate.App:
    """A procrastinate app on `conninfo` (a libpq URI) with the inspection task and the
    periodic upkeep: retention on `retention_cron` (None: not scheduled) and, hourly,
    finished jobs older than `keep_finished_jobs_hours` deleted; and the mailed report on
    `report_cron` and the SPC alarm check on `spc_cron` (None: not scheduled)."""
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=conninfo, min_size=1, max_size=max(2, max_connections)
        )
    )
    # Registered per app (not through a shared Blueprint, which renames its tasks in place
    # when added, so a second app in the same process would not find them).
    app.task(name=TASK_NAME, queue=QUEUE_NAME, pass_context=True)(inspect_image)

    async def prune_queue_jobs(context: procrastinate.JobContext, timestamp: int) -> None:
        """Periodic: delete finished jobs (failed, cancelled and aborted too: the ledger
        keeps what happened to each image) older than `keep_finished_jobs_hours`. The
        work of procrastinate's builtin `remove_old_jobs`, which a periodic schedule
        cannot call (it takes no `timestamp`)."""
        await context.app.job_manager.delete_old_jobs(
            nb_hours=keep_finished_jobs_hours,
            include_failed=True,
            include_cancelled=True,
            include_aborted=True,
        )

    # One run at a time (`lock`) and at most one waiting (`queueing_lock`): a slow run is
    # never overtaken by the next tick's.
    app.periodic(cron=PRUNE_CRON, lock=PRUNE_TASK, queueing_lock=PRUNE_TASK)(
        app.task(name=PRUNE_TASK, queue=MAINTENANCE_QUEUE, pass_context=True)(prune_queue_jobs)
    )
    if retention_cron:
        app.periodic(cron=retention_cron, lock=RETENTION_TASK, queueing_lock=RETENTION_TASK)(
            app.task(name=RETENTION_TASK, queue=MAINTENANCE_QUEUE, pass_context=True)(
                apply_retention
            )
        )
    if report_cron:
        app.periodic(cron=report_cron, lock=REPORT_TASK, queueing_lock=REPORT_TASK)(
            app.task(name=REPORT_TASK, queue=MAINTENANCE_QUEUE, pass_context=True)(mail_report)
        )
    if spc_cron:
        app.periodic(cron=spc_cron, lock=SPC_TASK, queueing_lock=SPC_TASK)(
            app.task(name=SPC_TASK, queue=MAINTENANCE_QUEUE, pass_context=True)(check_spc_alarms)
        )
    return app


async def defer_inspections(app: procrastinate.App, img_unique_ids: Sequence[str]) -> None:
    """Queue one `inspect_image` job per id, in one round trip."""
    if img_unique_ids:
        task = app.tasks[TASK_NAME]
        await task.batch_defer_async(*[{"img_unique_id": str(i)} for i in img_unique_ids])  # type: ignore[arg-type]


async def defer_inspection_at(app: procrastinate.App, img_unique_id: str, when: datetime) -> None:
    """Queue one `inspect_image` job that no worker starts before `when`."""
    task = app.tasks[TASK_NAME]
    await task.configure(schedule_at=when).defer_async(img_unique_id=img_unique_id)


class StalledJobReaper:
    """Every `interval_s`, queues again the jobs of workers silent for `stalled_after_s`,
    fails single uploads whose process died, and removes orphaned files older than
    `orphan_grace_s`: this machine's scratch files at start and then every
    `file_sweep_interval_s`; the store's, once per `file_sweep_interval_s` for the whole
    deployment (whichever process finds it due first; see `inspection.orphans`) and at
    this process's start unless another process swept since.

    The job part is procrastinate's documented recipe for jobs left `doing` by a killed
    worker (`JobManager.get_stalled_jobs` + `retry_job`), run as a loop in each agent.
    """

    def __init__(
        self,
        app: procrastinate.App,
        service: InspectionService,
        stalled_after_s: float,
        interval_s: float,
        orphan_grace_s: float = 900.0,
        file_sweep_interval_s: float = 900.0,
    ) -> None:
        self.app = app
        self.service = service
        self.stalled_after_s = stalled_after_s
        self.interval_s = interval_s
        self.orphan_grace_s = orphan_grace_s
        self.file_sweep_interval_s = file_sweep_interval_s
        self._last_scratch_sweep: float | None = None
        self._started = time.monotonic()
        # Until this process's first sweep decision (not `busy`), a restart's sweep is due.
        self._first_store_sweep = True
        self._task: asyncio.Task[None] | None = None

    async def sweep(self) -> int:
        """Queue stalled jobs again, recover orphaned ledger rows and, when due, remove
        orphaned files; returns jobs retried."""
        stalled = list(
            await self.app.job_manager.get_stalled_jobs(
                seconds_since_heartbeat=self.stalled_after_s
            )
        )
        for job in stalled:
            logger.warning(
                "retrying stalled job", extra={"job_id": job.id, "task_kwargs": job.task_kwargs}
            )
            await self.app.job_manager.retry_job(job)
        await self.service.recover()
        now = time.monotonic()
        if self._last_scratch_sweep is None or now - self._last_scratch_sweep >= (
            self.file_sweep_interval_s
        ):
            self._last_scratch_sweep = now
            await self.service.orphan_files.remove_old_scratch_files(self.orphan_grace_s)
        # Each tick asks (one lock attempt and one row read); one process lists the store.
        run = await self.service.sweep_orphan_files(
            self.orphan_grace_s,
            self.file_sweep_interval_s,
            running_for_s=now - self._started if self._first_store_sweep else None,
        )
        if run.state != "busy":
            self._first_store_sweep = False
        return len(stalled)

    async def _run(self) -> None:
        # An outage of the store or the database fails every tick until it ends: it is
        # logged once when it starts and once when it ends, not with a traceback per tick.
        outage: str | None = None
        while True:
            try:
                await self.sweep()
            except (StorageUnavailable, OperationalError, InterfaceError) as exc:
                what = "store" if isinstance(exc, StorageUnavailable) else "database"
                if outage != what:
                    logger.warning(
                        "stalled-job sweep waits for the %s",
                        what,
                        extra={"error": getattr(exc, "detail", None) or str(exc)[:500]},
                    )
                outage = what
            except Exception:
                logger.exception("stalled-job sweep failed")
            else:
                if outage is not None:
                    logger.info("stalled-job sweep: the %s answers again", outage)
                outage = None
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        """Start the loop in the background."""
        self._task = asyncio.create_task(self._run(), name="stalled-job-reaper")

    async def stop(self) -> None:
        """Stop the loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

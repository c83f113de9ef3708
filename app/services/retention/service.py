"""Retention: inspections past RETENTION_DAYS_PASS / RETENTION_DAYS_DEFECT are deleted,
rows and files together (docs/retention.md).

Rows go first, in one transaction per chunk; their files are removed after the commit.
A file that cannot be removed then is logged and left to the orphan-file sweep
(`app.services.inspection.orphans`, which removes files that no row names; its next run
then lists the whole store), so a failure leaves no row without its files and no file for
ever without a row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.services.database.session import unit_of_work
from app.services.inspection.orphans import ORPHAN_FILES
from app.services.retention.repository import (
    Expired,
    FileSweepRepository,
    Kind,
    RetentionRepository,
)
from app.services.storage import Storage
from app.utils.ids import utc_now

logger = logging.getLogger(__name__)

CHUNK = 500
# Ids listed in a report (the counts are always complete).
REPORT_IDS = 20


@dataclass
class RetentionReport:
    """What one retention run deleted, or would delete (`dry_run`).

    Attributes:
        dry_run: nothing was deleted; the counts say what would be.
        pass_before, defect_before: the cut-offs (UTC); None when that kind is kept.
        counts: inspections by kind (`pass`, `defect`, `failed`).
        examples: up to 20 ids of each kind, oldest first.
        file_errors: inspections whose rows went but whose files could not be removed
            (left to the orphan-file sweep).
    """

    dry_run: bool
    pass_before: datetime | None
    defect_before: datetime | None
    counts: dict[Kind, int] = field(default_factory=lambda: {"pass": 0, "defect": 0, "failed": 0})
    examples: dict[Kind, list[str]] = field(
        default_factory=lambda: {"pass": [], "defect": [], "failed": []}
    )
    file_errors: int = 0

    @property
    def total(self) -> int:
        """Inspections over all kinds."""
        return sum(self.counts.values())


def cutoffs(settings: Settings, now: datetime) -> tuple[datetime | None, datetime | None]:
    """(pass cut-off, defect cut-off): `now` less RETENTION_DAYS_PASS / _DEFECT days;
    None for a setting that is unset (kept for ever)."""
    days_pass, days_defect = settings.retention_days_pass, settings.retention_days_defect
    return (
        now - timedelta(days=days_pass) if days_pass is not None else None,
        now - timedelta(days=days_defect) if days_defect is not None else None,
    )


class RetentionService:
    """Deletes expired inspections; one per agent process, run by the periodic queue job
    and by `aoi-agent retention`."""

    def __init__(
        self, settings: Settings, storage: Storage, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.sessions = sessions

    async def run(
        self, *, dry_run: bool | None = None, now: datetime | None = None
    ) -> RetentionReport:
        """Delete (or, dry run, count) every expired inspection.

        Args:
            dry_run: report only; None follows RETENTION_DRY_RUN.
            now: the time the ages are measured from (UTC); default now.

        Returns:
            What was (or would be) deleted; also logged.
        """
        dry_run = self.settings.retention_dry_run if dry_run is None else dry_run
        pass_before, defect_before = cutoffs(self.settings, now or utc_now())
        report = RetentionReport(dry_run, pass_before, defect_before)
        if pass_before is None and defect_before is None:
            return report
        async with self.sessions() as session:
            repo = RetentionRepository(session)
            if dry_run:
                report.counts = await repo.counts(pass_before, defect_before)
                self._note(report, await repo.expired(pass_before, defect_before, CHUNK))
        if not dry_run:
            after: tuple[datetime, str] | None = None
            while True:
                chosen, after = await self._delete_chunk(report, pass_before, defect_before, after)
                if chosen < CHUNK:
                    break
            if report.file_errors:
                # The files left lie in old day folders, which the sweep lists only in
                # full: make its next run one.
                async with unit_of_work(self.sessions) as session:
                    await FileSweepRepository(session).forget_horizon(ORPHAN_FILES)
        if report.total or dry_run:
            logger.warning(
                "retention: would delete" if dry_run else "retention: deleted",
                extra={
                    "inspections": report.counts,
                    "pass_before": pass_before.isoformat() if pass_before else None,
                    "defect_before": defect_before.isoformat() if defect_before else None,
                    "examples": report.examples,
                    "file_errors": report.file_errors,
                },
            )
        return report

    def _note(self, report: RetentionReport, expired: list[Expired]) -> None:
        for item in expired:
            examples = report.examples[item.kind]
            if len(examples) < REPORT_IDS:
                examples.append(item.img_unique_id)

    async def _delete_chunk(
        self,
        report: RetentionReport,
        pass_before: datetime | None,
        defect_before: datetime | None,
        after: tuple[datetime, str] | None,
    ) -> tuple[int, tuple[datetime, str] | None]:
        """Delete up to CHUNK expired stored inspections after `after` and up to CHUNK
        failed ones; returns how many were chosen (fewer than CHUNK: nothing more is
        expired) and where the next chunk starts."""
        async with unit_of_work(self.sessions) as session:
            repo = RetentionRepository(session)
            expired = await repo.expired(pass_before, defect_before, CHUNK, after)
            gone = await repo.delete([e.img_unique_id for e in expired])
        stored = [e for e in expired if e.kind != "failed"]
        if stored:
            after = (stored[-1].accepted_at, stored[-1].img_unique_id)
        if not gone:
            return 0, after  # what was chosen changed meanwhile (being retried): next run
        deleted = [e for e in expired if e.img_unique_id in gone]
        self._note(report, deleted)
        for item in deleted:
            report.counts[item.kind] += 1
            try:
                await self.storage.remove_inspection_files(
                    item.input_image_path, item.img_unique_id, item.accepted_at
                )
            except Exception:
                report.file_errors += 1
                logger.exception(
                    "retention: files not removed (the orphan-file sweep will)",
                    extra={"img_unique_id": item.img_unique_id},
                )
        # Both sources are limited separately: the larger one says whether more remain.
        return max(len(stored), len(expired) - len(stored)), after

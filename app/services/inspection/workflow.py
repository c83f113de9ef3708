"""The inspection workflow: accept an image, run inference, store the results.

Every accepted image first gets a ledger row (`inspections`) with its input on
disk. Inference then ends in exactly one of two states: results stored (files
plus `images`/`classes`/`regions` rows, one transaction) and the ledger row
`succeeded`; or the ledger row `failed` with the error, the input kept for retry
and no result file or row left behind.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.errors import (
    AgentError,
    BadImage,
    BatchNotFound,
    DuplicateInProgress,
    ImageNotFound,
    ImageTooLarge,
    InsufficientStorage,
    ModelServiceUnavailable,
    NotRetryable,
    StorageUnavailable,
    StoredFileMissing,
)
from app.models.context import InspectionContext
from app.models.database import Batch, Image, Inspection, InspectionStatus
from app.models.model_service import Analysis
from app.models.schemas import RejectedFile
from app.services.boards.repository import BoardRepository
from app.services.cfx.outbox import CfxOutbox
from app.services.database.session import unit_of_work
from app.services.history.repository import ImageRepository
from app.services.inspection.orphans import OrphanFileSweep, SweepRun
from app.services.inspection.receiver import ReceivedFile
from app.services.inspection.repository import INTERRUPTED_ERROR, InspectionRepository
from app.services.model_service.pool import ModelServicePool
from app.services.storage import RESULT_FILE_NAMES, Storage, is_disk_full
from app.services.system import metrics
from app.services.system.repository import AgentProcessRepository
from app.services.webhooks.events import WebhookEvents
from app.utils import fastjson
from app.utils.ids import download_stem, new_batch_id, new_img_unique_id, utc_now
from app.utils.images import ImageInfo, validate_image
from app.utils.logging import request_id_var
from app.utils.text import printable
from app.utils.version import installed_version, without_userinfo

logger = logging.getLogger(__name__)

Deferrer = Callable[[Sequence[str]], Awaitable[None]]
ScheduledDeferrer = Callable[[str, datetime], Awaitable[None]]

# The automatic retries of a batch image waiting for the model service or the store: at
# most this far apart, seconds.
BATCH_RETRY_MAX_DELAY_S = 300.0
# Rows of processes silent this long are deleted (their work was swept long before), seconds.
FORGET_PROCESS_AFTER_S = 86_400.0


class WaitingForModelService(Exception):
    """A batch image could not reach the model service or the store (an outage) and is
    queued again for later."""

    def __init__(self, img_unique_id: str, next_attempt_at: datetime) -> None:
        super().__init__(f"{img_unique_id}: next attempt at {next_attempt_at.isoformat()}")
        self.next_attempt_at = next_attempt_at


@dataclass
class InspectionOutcome:
    """A stored inspection: its image row, the analysis JSON and timings (seconds)."""

    image: Image
    analysis: dict[str, Any]
    defect_classes: dict[str, int]
    model_service_seconds: float | None = None
    total_seconds: float | None = None
    result_images: dict[str, bytes] = field(default_factory=dict)
    input_sha256: str | None = None
    # The first earlier inspection of the same bytes, when this one re-tested them.
    repeat_of: str | None = None
    # This is an earlier inspection, answered instead of inspecting again (skip_duplicates).
    skipped_duplicate: bool = False
    # The board context sent with the image (serial, product, line...), if any.
    context: InspectionContext | None = None

    @property
    def total_defects(self) -> int:
        """Regions over all classes."""
        return sum(self.defect_classes.values())


@dataclass(frozen=True)
class SkippedDuplicate:
    """A received file not inspected because its bytes already were (`skip_duplicates`).

    Attributes:
        position: index of the file in its request.
        filename: the client's name for it.
        existing: the first earlier inspection of the same bytes (not `failed`).
    """

    position: int
    filename: str
    existing: Inspection


@dataclass
class BatchAcceptance:
    """A stored and queued batch: the accepted inspections, the rejected files and the
    files skipped as duplicates. `batch` is None when every usable file was skipped."""

    batch: Batch | None
    accepted: list[Inspection]
    rejected: list[RejectedFile]
    skipped: list[SkippedDuplicate] = field(default_factory=list)


class InspectionService:
    """Runs inspections; one per agent process, shared by routes and queue workers."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        client: ModelServicePool,
        sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.client = client
        self.sessions = sessions
        self.orphan_files = OrphanFileSweep(storage, sessions)
        # IPC-CFX messages, written in the transaction that stores or fails an inspection.
        self.cfx = CfxOutbox(settings)
        # Webhook events, written in the same transactions (docs/webhooks.md).
        self.webhooks = WebhookEvents()
        self.defer: Deferrer | None = None
        self.defer_at: ScheduledDeferrer | None = None
        # Called with the id of each newly stored inspection once its rows committed (the
        # shadow model services' sample, `app.services.models.shadow`); must not block.
        self.after_stored: Callable[[str], None] | None = None
        # This process's id in `agent_processes` (set by the heartbeat); inspections it
        # processes name it as their owner.
        self.process_id: str | None = None

    # -- accepting -----------------------------------------------------------------------

    async def _accept(
        self,
        received: ReceivedFile,
        batch_id: str | None,
        accepted_at: datetime,
        *,
        read: bool = False,
    ) -> tuple[Inspection, bytes | None]:
        """Validate a received file and move it into place; returns its (unsaved) ledger
        row, and with `read` the file's bytes, read in the same worker-thread hop as the
        validation (the single upload sends them to the model service next, without
        reading them back from the store), else None.

        Raises:
            BadImage, UnsupportedImage, ImageTooLarge: the file is not a usable image.
        """
        if received.problem is not None:
            raise received.problem
        if received.too_large or received.path is None:
            raise ImageTooLarge(
                f"'{received.filename}' is larger than the limit of"
                f" {self.settings.max_file_size_mb:g} MiB (MAX_FILE_SIZE_MB)"
            )
        incoming = received.path
        filename, max_pixels = received.filename, self.settings.max_image_pixels

        def validate_and_read() -> tuple[ImageInfo, bytes | None]:
            info = validate_image(incoming, filename, max_pixels)
            return info, incoming.read_bytes() if read else None

        info, data = await anyio.to_thread.run_sync(
            validate_and_read, limiter=self.client.decode_limiter
        )
        img_unique_id = new_img_unique_id(accepted_at)
        key = self.storage.input_key(img_unique_id, accepted_at, received.filename, info.suffix)
        original_filename = received.filename[:255]
        # The name the input downloads under (`export.image_file`), kept with the object.
        download_name = f"{download_stem(original_filename, img_unique_id)}{info.suffix.lower()}"
        await self.storage.keep_input(incoming, key, info.media_type, download_name)
        received.path = None  # kept: no longer a scratch file to discard
        inspection = Inspection(
            img_unique_id=img_unique_id,
            batch_id=batch_id,
            original_filename=original_filename,
            input_image_path=key,
            size_bytes=received.size_bytes,
            media_type=info.media_type,
            status=InspectionStatus.PENDING,
            attempts=0,
            created_at=accepted_at,
            updated_at=accepted_at,
            input_sha256=received.sha256,
        )
        return inspection, data

    async def ensure_disk_space(self) -> None:
        """Refuse new work while the disk holding DATA_DIR is below MIN_FREE_DISK_MB free.

        Raises:
            InsufficientStorage: too little free space (507).
        """
        usage = await self.storage.disk_usage()
        minimum = self.settings.min_free_disk_bytes
        if usage.free < minimum:
            raise InsufficientStorage(
                f"the disk holding the agent's data has {usage.free / 2**20:.0f} MB free, less"
                f" than MIN_FREE_DISK_MB ({minimum / 2**20:.0f} MB); uploads are refused until"
                " space is freed (GET /api/health shows the disk)"
            )

    async def inspect_upload(
        self,
        received: ReceivedFile,
        *,
        skip_duplicates: bool = False,
        context: InspectionContext | None = None,
    ) -> InspectionOutcome:
        """Accept one uploaded image and inspect it now (the single-upload path).

        `context` (the board it shows) is stored with the ledger row, in its transaction.

        The same bytes uploaded again are inspected again, the answer naming the earlier
        inspection in `repeat_of`; with `skip_duplicates` the earlier inspection is
        answered instead (`skipped_duplicate`) and nothing new is stored.

        Raises:
            BadImage, UnsupportedImage, ImageTooLarge: nothing is stored.
            DuplicateInProgress: `skip_duplicates` and the same bytes are still being
                inspected (nothing is stored).
            ModelServiceUnavailable, ModelServiceBadAnswer: the image is kept and ledgered
                as failed; the error carries its `img_unique_id` and a `retry_url`.
        """
        started = time.perf_counter()
        inspection, image_bytes = await self._accept(received, None, utc_now(), read=True)
        # Inserted already claimed by this process (what `process` would do in a second
        # transaction): nobody else knows the row until the answer names it.
        inspection.status = InspectionStatus.PROCESSING
        inspection.owner_process_id = self.process_id
        inspection.attempts = 1
        contexts = {inspection.img_unique_id: context} if context is not None else {}
        _, skipped = await self._insert_ledger(
            [inspection], skip_duplicates=skip_duplicates, contexts=contexts
        )
        if skipped:
            existing = skipped[0].existing
            if existing.status != InspectionStatus.SUCCEEDED:
                raise DuplicateInProgress(
                    f"the same bytes are being inspected as {existing.img_unique_id}"
                    f" ({existing.status.value}); ask GET /api/images/{existing.img_unique_id}"
                    " again shortly, or upload without skip_duplicates to inspect them again",
                    img_unique_id=existing.img_unique_id,
                )
            outcome = await self.load_outcome(existing.img_unique_id)
            outcome.skipped_duplicate = True
            # The answer may carry the result PNGs (include_images=base64), as for a new one.
            outcome.result_images = await self.read_result_images(outcome.image)
            return outcome
        outcome = await self._run_claimed(
            inspection, 1, started, wait_for_service=False, image_bytes=image_bytes
        )
        outcome.context = context
        return outcome

    async def accept_batch(
        self,
        files: list[ReceivedFile],
        *,
        skip_duplicates: bool = False,
        contexts: Sequence[InspectionContext | None] = (),
    ) -> BatchAcceptance:
        """Store and ledger every usable file of a batch, then queue them.

        `contexts` gives each file's board context by position (None or absent: none); it
        is stored with the ledger rows in their transaction, so the queued job needs only
        the id.

        With `skip_duplicates`, a file whose bytes were already inspected (or are being
        inspected, in this batch too) is not stored again but reported in `skipped`.

        Raises:
            BadImage: no file of the batch is usable (the error lists why, per file).
            StorageUnavailable: the store could not keep a file; nothing is accepted.
        """
        accepted_at = utc_now()
        batch = Batch(batch_id=new_batch_id(accepted_at), created_at=accepted_at)
        accepted: list[Inspection] = []
        rejected: list[RejectedFile] = []
        by_id: dict[str, InspectionContext] = {}
        for position, received in enumerate(files):
            try:
                inspection, _ = await self._accept(received, batch.batch_id, accepted_at)
                inspection.batch_position = position
                accepted.append(inspection)
                context = contexts[position] if position < len(contexts) else None
                if context is not None:
                    by_id[inspection.img_unique_id] = context
            except StorageUnavailable:
                # Not the file's fault: the whole batch is refused (503, send it again),
                # without the inputs kept so far (the orphan sweep takes any it cannot).
                with contextlib.suppress(StorageUnavailable):
                    await self._remove_inputs(accepted)
                raise
            except AgentError as exc:
                rejected.append(
                    RejectedFile(filename=received.filename, error=exc.error, detail=exc.detail)
                )
        if not accepted:
            raise BadImage(
                f"none of the {len(files)} files is a usable image; see 'rejected'",
                rejected=[r.model_dump() for r in rejected],
            )
        batch.rejected_files = len(rejected)
        accepted, skipped = await self._insert_ledger(
            accepted, batch=batch, skip_duplicates=skip_duplicates, contexts=by_id
        )
        # Deferred only after the commit that created the rows; if this fails the start-up
        # sweep queues them (they are `pending` with no job).
        if self.defer is not None and accepted:
            await self.defer([i.img_unique_id for i in accepted])
        return BatchAcceptance(
            batch=batch if accepted else None, accepted=accepted, rejected=rejected, skipped=skipped
        )

    async def _insert_ledger(
        self,
        rows: list[Inspection],
        batch: Batch | None = None,
        *,
        skip_duplicates: bool = False,
        contexts: dict[str, InspectionContext] | None = None,
    ) -> tuple[list[Inspection], list[SkippedDuplicate]]:
        """Insert the ledger rows (and their batch, and the board context of each row in
        `contexts`, by id), each marked as a repeat of the first earlier inspection of its
        bytes; with `skip_duplicates` such rows are left out and their stored inputs removed.

        Returns:
            (rows inserted, rows skipped as duplicates). The batch is inserted only when
            some row is, with `total_images` set.
        """
        inserted: list[Inspection] = []
        skipped: list[SkippedDuplicate] = []
        try:
            async with unit_of_work(self.sessions) as session:
                repo = InspectionRepository(session)
                hashes = [r.input_sha256 for r in rows if r.input_sha256]
                # Locked per hash until commit, so two requests with the same bytes cannot
                # both miss each other.
                first = await repo.first_inspections_by_hash(hashes, lock=True)
                for row in rows:
                    earlier = first.get(row.input_sha256) if row.input_sha256 else None
                    if earlier is not None and skip_duplicates:
                        position = row.batch_position or 0
                        skipped.append(SkippedDuplicate(position, row.original_filename, earlier))
                        continue
                    row.repeat_of = earlier.img_unique_id if earlier is not None else None
                    if row.input_sha256 and earlier is None:
                        first[row.input_sha256] = row
                    inserted.append(row)
                if batch is not None and inserted:
                    batch.total_images = len(inserted)
                    await repo.add_batch(batch)
                await repo.add_all(inserted)
                if contexts:
                    kept = {i.img_unique_id for i in inserted}
                    BoardRepository(session).add_contexts(
                        {k: v for k, v in contexts.items() if k in kept}
                    )
        except BaseException:
            await self._remove_inputs(rows)
            raise
        await self._remove_inputs([s for s in rows if s not in inserted])
        return inserted, skipped

    async def _remove_inputs(self, rows: list[Inspection]) -> None:
        with anyio.CancelScope(shield=True):
            for row in rows:
                await self.storage.remove_inspection_files(
                    row.input_image_path, row.img_unique_id, None
                )

    # -- processing ----------------------------------------------------------------------

    async def process(
        self,
        img_unique_id: str,
        started: float | None = None,
        *,
        require_failed: bool = False,
        wait_for_service: bool = False,
    ) -> InspectionOutcome:
        """Run inference for an accepted image and store its results (idempotent).

        An inspection already `succeeded` is returned as stored, so a job that runs twice
        (a worker died after storing) stores nothing twice. The row names this process as
        its owner while inference runs.

        Args:
            require_failed: refuse (409) unless the inspection is `failed`, checked under the
                row lock, so two retries never run the same image twice at once.
            wait_for_service: a batch image: when the model service or the store is
                unreachable, queue it again for later (`WaitingForModelService`) instead of
                failing it, within BATCH_RETRY_WINDOW_S.

        Raises:
            ImageNotFound: no ledger row with this id.
            NotRetryable: `require_failed` and the inspection is not `failed`, or another
                live process is inspecting it now.
            WaitingForModelService: see `wait_for_service`; the row is `pending` with
                `next_attempt_at`.
            ModelServiceUnavailable, ModelServiceBadAnswer, StoredFileMissing,
                StorageUnavailable: the ledger row is marked failed, the input is kept.
        """
        started = time.perf_counter() if started is None else started
        async with unit_of_work(self.sessions) as session:
            repo = InspectionRepository(session)
            inspection = await repo.get(img_unique_id, for_update=True)
            if inspection is None:
                raise ImageNotFound(f"no inspection with id {img_unique_id}")
            if require_failed and inspection.status != InspectionStatus.FAILED:
                raise NotRetryable(
                    f"inspection {img_unique_id} is {inspection.status.value}; only failed"
                    " inspections can be retried"
                )
            if inspection.status == InspectionStatus.SUCCEEDED:
                return await self.load_outcome(img_unique_id)
            owner = inspection.owner_process_id
            if (
                inspection.status == InspectionStatus.PROCESSING
                and owner is not None
                and owner != self.process_id
                and await AgentProcessRepository(session).is_alive(
                    owner, self.settings.stalled_job_after_s
                )
            ):
                # A second job for an image a live process is inspecting (e.g. a job queued
                # again by the sweep): running it would be a second inference.
                raise NotRetryable(
                    f"inspection {img_unique_id} is processing in another agent process;"
                    " wait for it to finish"
                )
            attempts = inspection.attempts + 1
            await repo.mark(
                img_unique_id,
                status=InspectionStatus.PROCESSING,
                attempts=attempts,
                owner_process_id=self.process_id,
                next_attempt_at=None,
                waiting_for=None,
            )
        return await self._run_claimed(inspection, attempts, started, wait_for_service)

    async def _run_claimed(
        self,
        inspection: Inspection,
        attempts: int,
        started: float,
        wait_for_service: bool,
        image_bytes: bytes | None = None,
    ) -> InspectionOutcome:
        """Inference and storage of an inspection this process has marked `processing`
        (attempt number `attempts`); failures end in the ledger (see `process`).
        `image_bytes`: the input's bytes when the caller has them (else read from the
        store)."""
        img_unique_id = inspection.img_unique_id
        try:
            outcome = await self._infer_and_store(inspection, started, image_bytes)
        except (ModelServiceUnavailable, StorageUnavailable) as exc:
            if wait_for_service and inspection.batch_id is not None:
                next_attempt_at = await self._wait_for_service(inspection, attempts, exc, started)
                if next_attempt_at is not None:
                    raise WaitingForModelService(img_unique_id, next_attempt_at) from exc
            await self._mark_failed(img_unique_id, exc.detail, exc.status_code, started)
            exc.extra.setdefault("img_unique_id", img_unique_id)
            exc.extra.setdefault("retry_url", f"/api/images/{img_unique_id}/retry")
            raise
        except AgentError as exc:
            await self._mark_failed(img_unique_id, exc.detail, exc.status_code, started)
            exc.extra.setdefault("img_unique_id", img_unique_id)
            exc.extra.setdefault("retry_url", f"/api/images/{img_unique_id}/retry")
            raise
        except Exception:
            # The details (SQL, traceback) go to error.log under the request id; the
            # ledger keeps a sentence for people.
            logger.exception(
                "inspection failed unexpectedly", extra={"img_unique_id": img_unique_id}
            )
            await self._mark_failed(
                img_unique_id,
                "the agent could not finish this inspection because of an internal error"
                f" (logged in error.log{_request_id_text()}); its input is kept, retry it",
                500,
                started,
            )
            raise
        return outcome

    async def _wait_for_service(
        self,
        inspection: Inspection,
        attempts: int,
        exc: ModelServiceUnavailable | StorageUnavailable,
        started: float,
    ) -> datetime | None:
        """Mark a batch image as waiting for the model service or the store (`exc` says
        which: `waiting_for` `storage` or `model_service`); returns when
        it is tried next, or None when BATCH_RETRY_WINDOW_S has run out (the caller fails
        it). One window and back-off for both outages, counted from the first failure.

        Back-off: BATCH_RETRY_BACKOFF_BASE_S x 2^(attempts-1), at most 5 minutes, and never
        past the end of the window (the last attempt is at the window's end).
        """
        storage = isinstance(exc, StorageUnavailable)
        now = utc_now()
        since = inspection.waiting_since or now
        window_end = since + timedelta(seconds=self.settings.batch_retry_window_s)
        if now >= window_end:
            exc.detail += (
                f" (tried {attempts} times over"
                f" {(now - since).total_seconds() / 60:.0f} min; BATCH_RETRY_WINDOW_S)"
            )
            return None
        delay = min(
            self.settings.batch_retry_backoff_base_s * 2 ** max(0, attempts - 1),
            BATCH_RETRY_MAX_DELAY_S,
        )
        next_attempt_at = min(now + timedelta(seconds=delay), window_end)
        async with unit_of_work(self.sessions) as session:
            await InspectionRepository(session).mark(
                inspection.img_unique_id,
                status=InspectionStatus.PENDING,
                last_error=exc.detail,
                waiting_for="storage" if storage else "model_service",
                error_status_code=exc.status_code,
                owner_process_id=None,
                waiting_since=since,
                next_attempt_at=next_attempt_at,
                total_seconds=round(time.perf_counter() - started, 6),
            )
        logger.warning(
            "store unreachable; batch image queued again"
            if storage
            else "model service unreachable; batch image queued again",
            extra={
                "img_unique_id": inspection.img_unique_id,
                "next_attempt_at": next_attempt_at.isoformat(),
                "error": exc.detail,
            },
        )
        return next_attempt_at

    async def _infer_and_store(
        self, inspection: Inspection, started: float, image_bytes: bytes | None = None
    ) -> InspectionOutcome:
        img_unique_id = inspection.img_unique_id
        if image_bytes is None:
            try:
                image_bytes = await self.storage.get(inspection.input_image_path)
            except (OSError, ValueError) as exc:
                raise StoredFileMissing(
                    f"the input image of {img_unique_id} is missing from storage"
                    f" ({inspection.input_image_path}); upload it again"
                ) from exc
        result = await self.client.infer(
            image_bytes, inspection.original_filename, inspection.media_type
        )
        try:
            # All or nothing: a failed write removes what it wrote.
            keys = await self.storage.write_results(
                img_unique_id,
                inspection.created_at,
                result.images,
                result.raw_analysis,
                download_stem(inspection.original_filename, img_unique_id),
            )
        except BaseException as exc:
            if is_disk_full(exc):
                raise InsufficientStorage(
                    "the disk holding the agent's data is full: the results of"
                    f" {img_unique_id} could not be written and none were kept; the input is"
                    " kept — free disk space (GET /api/health shows it) and retry"
                ) from exc
            raise
        shape = result.analysis.image_shape
        image = Image(
            img_unique_id=img_unique_id,
            image_height=shape.height,
            image_width=shape.width,
            processing_time_seconds=round(result.processing_time_seconds, 6),
            timestamp=inspection.created_at,
            input_image_path=inspection.input_image_path,
            result_image_1_path=keys["combined"],
            result_image_2_path=keys["mask"],
            result_image_3_path=keys["overlay"],
        )
        total_seconds = time.perf_counter() - started
        try:
            async with unit_of_work(self.sessions) as session:
                # The ledger row (with its model version) first, so the rollup triggers
                # of the result's rows file them under that version at once; in the other
                # order the ledger's trigger would move them there (same sums, more work).
                await InspectionRepository(session).mark(
                    img_unique_id,
                    sync_loaded=False,  # a new session: the ledger row is not loaded in it
                    status=InspectionStatus.SUCCEEDED,
                    completed_at=utc_now(),
                    model_service_seconds=round(result.round_trip_seconds, 6),
                    total_seconds=round(total_seconds, 6),
                    model_service_url=result.service_url or without_userinfo(self.client.base_url),
                    model_name=result.model_name,
                    model_version=result.model_version,
                    agent_version=installed_version(),
                    last_error=None,
                    error_status_code=None,
                    owner_process_id=None,
                    next_attempt_at=None,
                    waiting_since=None,
                    waiting_for=None,
                )
                await ImageRepository(session).add_result(image, result.analysis)
                await self.cfx.inspection_finished(
                    session,
                    img_unique_id,
                    inspection.created_at,
                    test_procedure=" ".join(
                        part for part in (result.model_name, result.model_version) if part
                    )
                    or None,
                )
                await self.webhooks.inspection_completed(
                    session,
                    img_unique_id,
                    batch_id=inspection.batch_id,
                    defect_classes=_defect_counts(result.analysis),
                    model_name=result.model_name,
                    model_version=result.model_version,
                )
        except IntegrityError:
            # Another worker stored this inspection first: its files are the same ones.
            async with self.sessions() as session:
                if await ImageRepository(session).exists(img_unique_id):
                    return await self.load_outcome(img_unique_id)
            await self._remove_results(img_unique_id, inspection.created_at)
            raise
        except BaseException:
            await self._remove_results(img_unique_id, inspection.created_at)
            raise
        metrics.record_inspection_stored(_defect_counts(result.analysis))
        if self.after_stored is not None:
            try:
                self.after_stored(img_unique_id)
            except Exception:  # the primary answer is stored: nothing may fail it now
                logger.exception("after-store hook failed", extra={"img": img_unique_id})
        logger.info(
            "inspection stored",
            extra={
                "img_unique_id": img_unique_id,
                "defects": result.analysis.total_defects,
                "model_service_s": round(result.round_trip_seconds, 4),
                "total_s": round(total_seconds, 4),
            },
        )
        return InspectionOutcome(
            image=image,
            analysis=result.raw_analysis,
            defect_classes=_defect_counts(result.analysis),
            model_service_seconds=result.round_trip_seconds,
            total_seconds=total_seconds,
            result_images=dict(result.images),
            input_sha256=inspection.input_sha256,
            repeat_of=inspection.repeat_of,
        )

    async def _remove_results(self, img_unique_id: str, accepted_at: datetime) -> None:
        with anyio.CancelScope(shield=True):
            await self.storage.delete_prefix(self.storage.result_prefix(img_unique_id, accepted_at))

    async def _mark_failed(
        self, img_unique_id: str, error: str, status_code: int, started: float
    ) -> None:
        async with unit_of_work(self.sessions) as session:
            await InspectionRepository(session).mark(
                img_unique_id,
                status=InspectionStatus.FAILED,
                last_error=printable(error, 2000),
                error_status_code=status_code,
                owner_process_id=None,
                next_attempt_at=None,
                waiting_since=None,
                total_seconds=round(time.perf_counter() - started, 6),
            )
            await self._report_failed(session, img_unique_id, error)
        metrics.record_inspection_failed()
        logger.warning("inspection failed", extra={"img_unique_id": img_unique_id, "error": error})

    async def _report_failed(self, session: AsyncSession, img_unique_id: str, error: str) -> None:
        """The outbox rows of an inspection that ended `failed` — CFX `WorkStarted`,
        `UnitsInspected` (`OverallResult` Error) and `WorkCompleted` (Failed), and the
        webhook event `inspection.failed` (with `batch.completed` when it was its batch's
        last image) — added to `session`, the transaction that marks it failed. Every way
        an inspection ends failed calls this, once per change to `failed`."""
        await self.cfx.inspection_finished(session, img_unique_id, None, error=error)
        await self.webhooks.inspection_failed(session, img_unique_id, error)

    async def process_queued(self, img_unique_id: str) -> None:
        """The queue job: process one batch image; failures are ledgered, not raised.

        An image that cannot reach the model service or the store is queued again for
        later (growing back-off within BATCH_RETRY_WINDOW_S) rather than failed.
        """
        try:
            await self.process(img_unique_id, wait_for_service=True)
        except ImageNotFound:
            logger.info("queued inspection was deleted", extra={"img_unique_id": img_unique_id})
        except WaitingForModelService as waiting:
            if self.defer_at is not None:
                await self.defer_at(img_unique_id, waiting.next_attempt_at)
        except AgentError:
            pass  # recorded in the ledger by `process`

    async def retry(self, img_unique_id: str) -> InspectionOutcome:
        """Run a failed inspection again, now.

        Raises:
            ImageNotFound: unknown id.
            NotRetryable: the inspection is not `failed` (e.g. still `processing`: 409).
            (and what `process` raises)
        """
        return await self.process(img_unique_id, require_failed=True)

    async def retry_batch(self, batch_id: str) -> list[str]:
        """Queue every failed image of a batch again now, and move the next attempt of the
        images waiting for the model service to now.

        Returns:
            The ids queued again or moved forward, in no particular order.

        Raises:
            BatchNotFound: no batch with this id.
        """
        async with unit_of_work(self.sessions) as session:
            repo = InspectionRepository(session)
            if await repo.get_batch(batch_id) is None:
                raise BatchNotFound(f"no batch with id {batch_id}")
            failed, waiting = await repo.retry_batch(batch_id, utc_now())
        if failed and self.defer is not None:
            await self.defer(failed)
        logger.info(
            "batch retried",
            extra={"batch_id": batch_id, "failed_queued": len(failed), "waiting": len(waiting)},
        )
        return [*failed, *waiting]

    # -- reading back --------------------------------------------------------------------

    async def load_outcome(self, img_unique_id: str) -> InspectionOutcome:
        """A stored inspection as `InspectionOutcome` (analysis JSON read from disk).

        Raises:
            ImageNotFound: no stored result with this id.
        """
        async with self.sessions() as session:
            image = await ImageRepository(session).get(img_unique_id)
            inspection = await InspectionRepository(session).get(img_unique_id)
            context = await BoardRepository(session).context(img_unique_id)
        if image is None:
            raise ImageNotFound(f"no inspection result with id {img_unique_id}")
        analysis = await self.read_analysis(image)
        return InspectionOutcome(
            image=image,
            analysis=analysis,
            defect_classes={c.class_name: c.total_regions for c in image.classes},
            model_service_seconds=inspection.model_service_seconds if inspection else None,
            total_seconds=inspection.total_seconds if inspection else None,
            input_sha256=inspection.input_sha256 if inspection else None,
            repeat_of=inspection.repeat_of if inspection else None,
            context=context,
        )

    async def read_analysis(self, image: Image) -> dict[str, Any]:
        """The stored analysis JSON of an image.

        Raises:
            StoredFileMissing: it is not in storage (or not JSON).
        """
        try:
            return dict(fastjson.loads(await self.storage.get(self.analysis_key(image))))
        except (OSError, ValueError) as exc:
            raise StoredFileMissing(
                f"the analysis JSON of {image.img_unique_id} is missing from storage"
            ) from exc

    def analysis_key(self, image: Image) -> str:
        """The storage key of the analysis JSON of an image."""
        return self.storage.result_key(image.img_unique_id, image.timestamp, "analysis")

    async def read_result_images(self, image: Image) -> dict[str, bytes]:
        """The three result PNGs of a stored image, by kind.

        Raises:
            FileNotFoundError: one is not in storage.
        """
        return {
            kind: await self.storage.get(
                self.storage.result_key(image.img_unique_id, image.timestamp, kind)
            )
            for kind in RESULT_FILE_NAMES
        }

    async def delete(self, img_unique_id: str) -> None:
        """Delete an inspection: its rows (classes and regions by cascade) and its files.

        Raises:
            ImageNotFound: unknown id.
        """
        async with unit_of_work(self.sessions) as session:
            inspections = InspectionRepository(session)
            images = ImageRepository(session)
            inspection = await inspections.get(img_unique_id, for_update=True)
            image = await images.get(img_unique_id)
            if inspection is None and image is None:
                raise ImageNotFound(f"no inspection with id {img_unique_id}")
            await images.delete(img_unique_id)
            await inspections.delete(img_unique_id)
        kept = image or inspection
        assert kept is not None
        accepted_at = image.timestamp if image is not None else kept.created_at  # type: ignore[union-attr]
        await self.storage.remove_inspection_files(
            kept.input_image_path, img_unique_id, accepted_at
        )

    # -- recovery ------------------------------------------------------------------------

    async def recover(self) -> tuple[int, int]:
        """Queue batch images that lost their job; fail single uploads whose process died.

        A single upload is failed only when the process that owns it has sent no
        heartbeat for STALLED_JOB_AFTER_S seconds: a live upload is never touched. Each
        one failed here is reported as a failure in the normal path is (`_report_failed`:
        CFX messages and the `inspection.failed` webhook event), in the same transaction.

        Returns:
            (batch images queued again, single uploads marked failed).
        """
        async with unit_of_work(self.sessions) as session:
            repo = InspectionRepository(session)
            orphans = await repo.unfinished_batch_items_without_job()
            interrupted = await repo.fail_interrupted_single_uploads(
                self.settings.stalled_job_after_s
            )
            for img_unique_id in interrupted:
                await self._report_failed(session, img_unique_id, INTERRUPTED_ERROR)
            await AgentProcessRepository(session).forget_silent(FORGET_PROCESS_AFTER_S)
        for _ in interrupted:
            metrics.record_inspection_failed()
        if orphans and self.defer is not None:
            await self.defer(orphans)
        if orphans or interrupted:
            logger.info(
                "recovered unfinished work",
                extra={"queued_again": len(orphans), "failed_interrupted": len(interrupted)},
            )
        return len(orphans), len(interrupted)

    async def remove_orphan_files(self, grace_s: float) -> dict[str, int]:
        """Delete files a killed agent left behind, once older than `grace_s` seconds, now
        and listing the whole store (without the coordination of `sweep_orphan_files`):
        temporary upload files (`.part`), inputs that no ledger or image row names, and
        result folders that no `images` row names.

        The grace period protects work in flight: an input is moved into place a moment
        before its ledger row commits, results are written before their rows.

        Returns:
            Counts removed: `incoming`, `inputs`, `result_folders`.
        """
        incoming = await self.orphan_files.remove_old_scratch_files(grace_s)
        removed = await self.orphan_files.remove_orphans(time.time() - grace_s)
        return {"incoming": incoming, **removed}

    async def sweep_orphan_files(
        self, grace_s: float, interval_s: float, *, running_for_s: float | None = None
    ) -> SweepRun:
        """The periodic orphan-file sweep of the store, run by one process of the deployment
        per `interval_s` (see `app.services.inspection.orphans`; scratch files are
        this machine's: `orphan_files.remove_old_scratch_files`).

        Raises:
            OSError, StorageUnavailable, SQLAlchemyError: as `OrphanFileSweep.run_when_due`.
        """
        return await self.orphan_files.run_when_due(
            grace_s, interval_s, running_for_s=running_for_s
        )


def _request_id_text() -> str:
    request_id = request_id_var.get()
    return f" under request id {request_id}" if request_id else ""


def _defect_counts(analysis: Analysis) -> dict[str, int]:
    return {name: found.total_regions for name, found in analysis.classes.items()}

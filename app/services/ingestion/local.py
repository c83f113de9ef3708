"""The agent's own hot folders (`WATCH_DIRS`): files go straight to the inspection workflow.

Each complete file is copied into the upload area (hashing it on the way, as an
upload is hashed while it streams in) and the copies are accepted as one batch
through the normal batch path, so the queue, its retries and the Batch page
work as for uploads. Bytes already inspected (or being inspected) are skipped
and the file waits for that inspection instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.errors import AgentError, BadImage
from app.models.context import ContextError, InspectionContext
from app.models.database import InspectionStatus
from app.services.ingestion.folder import board_context, relative_name
from app.services.ingestion.watcher import (
    Handed,
    HotFolder,
    Settled,
    SubmitLater,
    WatchOptions,
)
from app.services.inspection.receiver import ReceivedFile, discard
from app.services.inspection.repository import InspectionRepository
from app.services.inspection.workflow import InspectionService, SkippedDuplicate
from app.services.storage import Storage

logger = logging.getLogger(__name__)

COPY_CHUNK_BYTES = 1024 * 1024


def copy_in(source: Path, filename: str, destination: Path, max_bytes: int) -> ReceivedFile:
    """Copy a dropped file to `destination`, computing its SHA-256 from the same chunks.

    Blocking. A file over `max_bytes` is not kept (`too_large`, no path), like an upload.

    Raises:
        OSError: the source cannot be read or the copy written (nothing is left behind).
    """
    received = ReceivedFile(filename=filename, path=destination)
    digest = hashlib.sha256()
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        with source.open("rb") as src, destination.open("wb") as dst:
            while chunk := src.read(COPY_CHUNK_BYTES):
                received.size_bytes += len(chunk)
                if received.size_bytes > max_bytes:
                    received.too_large = True
                    break
                digest.update(chunk)
                dst.write(chunk)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    if received.too_large:
        destination.unlink(missing_ok=True)
        received.path = None
    else:
        received.sha256 = digest.hexdigest()
    return received


def duplicate_note(filename: str, skipped: SkippedDuplicate) -> str | None:
    """The note left beside a file skipped as already inspected, or None when the earlier
    inspection is of this very file (same name: e.g. found again after a restart)."""
    existing = skipped.existing
    if existing.original_filename == filename:
        return None
    return (
        f"file: {filename}\n"
        f"not inspected again: the same bytes (SHA-256 {existing.input_sha256}) were"
        f" inspected as {existing.img_unique_id} (file '{existing.original_filename}',"
        f" accepted {existing.created_at.isoformat(timespec='seconds')})\n"
        f"result: /results/{existing.img_unique_id}\n"
    )


class AgentSubmitter:
    """Hands files to this agent's inspection workflow (batch path, skip duplicates)."""

    def __init__(
        self,
        service: InspectionService,
        storage: Storage,
        sessions: async_sessionmaker[AsyncSession],
        max_file_bytes: int,
        name_pattern: re.Pattern[str] | None = None,
    ) -> None:
        self.name_pattern = name_pattern  # WATCH_NAME_PATTERN: board context from names
        self.service = service
        self.storage = storage
        self.sessions = sessions
        self.max_file_bytes = max_file_bytes

    async def submit(self, root: Path, files: Sequence[Path]) -> list[Handed]:
        """Copy the files in and accept them as one batch; see `Submitter.submit`."""
        received: list[ReceivedFile] = []
        sources: list[Path] = []  # by position in `received`
        contexts: list[InspectionContext | None] = []  # by position in `received`
        refused: list[Handed] = []
        try:
            for source in files:
                name = relative_name(root, source)
                try:
                    context = await anyio.to_thread.run_sync(
                        board_context, self.name_pattern, source
                    )
                except ContextError as exc:
                    refused.append(Handed(source, rejection=str(exc)))
                    continue
                try:
                    copied = await anyio.to_thread.run_sync(
                        copy_in,
                        source,
                        name,
                        self.storage.new_incoming_path(),
                        self.max_file_bytes,
                    )
                except OSError as exc:  # gone or locked: found again by the next scan
                    logger.info("file not readable", extra={"file": name, "error": str(exc)})
                    continue
                received.append(copied)
                sources.append(source)
                contexts.append(context)
            if not received:
                return refused
            try:
                acceptance = await self.service.accept_batch(
                    received, skip_duplicates=True, contexts=contexts
                )
            except BadImage as exc:  # not one usable file
                details = [r["detail"] for r in exc.extra.get("rejected", [])]
                return refused + [
                    Handed(s, rejection=d) for s, d in zip(sources, details, strict=False)
                ]
            except (AgentError, DBAPIError, OSError) as exc:
                raise SubmitLater(str(exc)) from exc
        finally:
            await discard(received)
        by_name = {r.filename: r.detail for r in acceptance.rejected}
        handed = refused + [
            Handed(source, rejection=by_name[copied.filename])
            for source, copied in zip(sources, received, strict=True)
            if copied.filename in by_name
        ]
        handed += [
            Handed(
                sources[i.batch_position or 0], img_unique_id=i.img_unique_id, batch_id=i.batch_id
            )
            for i in acceptance.accepted
        ]
        for skipped in acceptance.skipped:
            existing = skipped.existing
            handed.append(
                Handed(
                    sources[skipped.position],
                    img_unique_id=existing.img_unique_id,
                    note=duplicate_note(skipped.filename, skipped),
                    settled=Settled(True)
                    if existing.status == InspectionStatus.SUCCEEDED
                    else None,
                )
            )
        return handed

    async def settled(self, img_unique_ids: Sequence[str]) -> dict[str, Settled]:
        """See `Submitter.settled`; a deleted inspection counts as failed."""
        try:
            async with self.sessions() as session:
                states = await InspectionRepository(session).settled_states(img_unique_ids)
        except (DBAPIError, OSError) as exc:
            raise SubmitLater(str(exc)) from exc
        return {
            img_unique_id: Settled(False, "the inspection was deleted before it ended")
            if inspection is None
            else Settled(inspection.status == InspectionStatus.SUCCEEDED, inspection.last_error)
            for img_unique_id, inspection in states.items()
        }


def watch_options(settings: Settings) -> WatchOptions:
    """Hot-folder options from the settings."""
    return WatchOptions(
        settle_s=settings.watch_settle_s,
        batch_window_s=settings.watch_batch_window_s,
        max_batch=settings.max_batch_size,
        polling=settings.watch_polling,
        tick_s=min(0.5, settings.watch_settle_s / 2),
    )


@contextlib.asynccontextmanager
async def hot_folders(
    settings: Settings,
    service: InspectionService,
    storage: Storage,
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[list[HotFolder]]:
    """Watch every folder of WATCH_DIRS for the duration of the block (none when empty)."""
    if not settings.watch_dirs:
        yield []
        return
    # watchfiles logs every change it sees at INFO; the hot folder logs what it does instead.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    submitter = AgentSubmitter(
        service, storage, sessions, settings.max_file_size_bytes, settings.watch_name_pattern
    )
    options = watch_options(settings)
    folders = [
        HotFolder(folder.expanduser().resolve(), submitter, options)
        for folder in settings.watch_dirs
    ]
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(folder.run(stop), name=f"hot-folder:{folder.root}")
        for folder in folders
    ]
    for folder in folders:
        logger.info(
            "watching hot folder",
            extra={"folder": str(folder.root), "polling": options.polling},
        )
    try:
        yield folders
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

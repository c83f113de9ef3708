"""Downloads: single files, thumbnails, and batch ZIPs streamed as they are built.

The batch ZIP is produced by `stream-zip`: each member is read from disk in
64 KiB chunks while the archive streams out, so neither the archive nor a whole
member is ever held in memory or written to a temporary file.
"""

from __future__ import annotations

import io
import stat
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio
from PIL import Image as PILImage
from sqlalchemy.ext.asyncio import AsyncSession
from stream_zip import ZIP_AUTO, Method, async_stream_zip

from app.errors import (
    BatchNotFound,
    ImageNotFound,
    InsufficientStorage,
    ResultNotReady,
    StoredFileMissing,
)
from app.models.database import Image, Inspection, InspectionStatus
from app.services.database.repositories import ImageRepository, InspectionRepository
from app.services.inspection.workflow import InspectionService
from app.services.review.repository import ReviewRepository
from app.services.storage.local import (
    ANALYSIS_FILE_NAME,
    RESULT_FILE_NAMES,
    Storage,
    atomic_write,
    is_disk_full,
)
from app.utils.spreadsheet import csv_text

CHUNK_BYTES = 64 * 1024
SUMMARY_COLUMNS = (
    "img_unique_id",
    "original_filename",
    "status",
    "timestamp",
    "image_width",
    "image_height",
    "processing_time_seconds",
    "total_defects",
    "defect_classes",
    "error",
    "verdicts",
    "disposition",
)


@dataclass(frozen=True)
class FileToSend:
    """A file to answer with: where it is, its media type and the download name."""

    path: Path
    media_type: str
    filename: str


async def image_file(
    session: AsyncSession, storage: Storage, img_unique_id: str, kind: str
) -> FileToSend:
    """The input or a result image of an inspection.

    Raises:
        ImageNotFound: unknown id.
        ResultNotReady: a result image of an inspection that has no results.
        StoredFileMissing: the file is gone from disk.
    """
    if kind == "input":
        # The ledger row exists for every accepted image (stored or failed) and holds the
        # input's path and its media type as sniffed from the content.
        inspection = await InspectionRepository(session).get(img_unique_id)
        if inspection is None:
            raise ImageNotFound(f"no inspection with id {img_unique_id}")
        path = _existing(storage, inspection.input_image_path, img_unique_id, "input image")
        return FileToSend(path, inspection.media_type, f"{img_unique_id}_input{path.suffix}")
    image = await ImageRepository(session).get(img_unique_id)
    if image is None:
        await _raise_missing_result(session, img_unique_id)
    assert image is not None
    stored_by_kind = {
        "combined": image.result_image_1_path,
        "mask": image.result_image_2_path,
        "overlay": image.result_image_3_path,
    }
    stored_path = stored_by_kind[kind]
    if stored_path is None:
        raise StoredFileMissing(f"inspection {img_unique_id} has no {kind} image")
    path = _existing(storage, stored_path, img_unique_id, f"{kind} image")
    return FileToSend(path, "image/png", f"{img_unique_id}_{kind}.png")


async def analysis_file(
    session: AsyncSession, service: InspectionService, img_unique_id: str
) -> FileToSend:
    """The analysis JSON of an inspection, as the model service sent it.

    Raises:
        ImageNotFound, ResultNotReady, StoredFileMissing: as for `image_file`.
    """
    image = await ImageRepository(session).get(img_unique_id)
    if image is None:
        await _raise_missing_result(session, img_unique_id)
    assert image is not None
    path = service.analysis_path(image)
    if not path.is_file():
        raise StoredFileMissing(f"the analysis JSON of {img_unique_id} is missing from disk")
    return FileToSend(path, "application/json", f"{img_unique_id}_analysis.json")


async def thumbnail_file(
    session: AsyncSession,
    storage: Storage,
    img_unique_id: str,
    size: int,
    kind: str,
    limiter: anyio.CapacityLimiter | None = None,
) -> FileToSend:
    """A small JPEG of the input or overlay image (longest side `size` pixels), cached on disk.

    Making one decodes the whole image (a JPEG at reduced scale), through `limiter` (the
    agent's decode limiter) so a gallery of big images cannot exhaust memory.

    Raises:
        ImageNotFound, ResultNotReady, StoredFileMissing: as for `image_file`.
    """
    source = await image_file(session, storage, img_unique_id, kind)
    target = storage.thumbnail_dir / f"{img_unique_id}_{kind}_{size}.jpg"
    if not target.is_file():
        try:
            await anyio.to_thread.run_sync(
                _make_thumbnail, source.path, target, size, limiter=limiter
            )
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            raise InsufficientStorage(
                "the disk holding DATA_DIR is full: no room for the thumbnail; free some space"
            ) from exc
    return FileToSend(target, "image/jpeg", f"{img_unique_id}_{kind}_thumb.jpg")


def _make_thumbnail(source: Path, target: Path, size: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with PILImage.open(source) as img:
        img.draft("RGB", (size, size))
        thumb = img.convert("RGB")
        thumb.thumbnail((size, size))
        thumb.save(buffer, "JPEG", quality=80)
    # A unique temporary name: a gallery may ask for the same thumbnail twice at once.
    atomic_write(target, buffer.getvalue())


def _existing(storage: Storage, stored: str, img_unique_id: str, what: str) -> Path:
    try:
        path = storage.resolve(stored)
    except ValueError as exc:
        raise StoredFileMissing(f"the {what} of {img_unique_id} is not in storage") from exc
    if not path.is_file():
        raise StoredFileMissing(f"the {what} of {img_unique_id} is missing from disk ({stored})")
    return path


async def _raise_missing_result(session: AsyncSession, img_unique_id: str) -> None:
    inspection = await InspectionRepository(session).get(img_unique_id)
    if inspection is None:
        raise ImageNotFound(f"no inspection with id {img_unique_id}")
    raise ResultNotReady(
        f"inspection {img_unique_id} is {inspection.status.value} and has no results yet"
        + (f": {inspection.last_error}" if inspection.last_error else "")
    )


@dataclass(frozen=True)
class _BatchMember:
    inspection: Inspection
    image: Image | None
    classes: dict[str, int] | None
    verdicts: dict[str, int] | None = None
    disposition: str | None = None


async def batch_zip(
    session: AsyncSession, storage: Storage, service: InspectionService, batch_id: str
) -> AsyncIterable[bytes]:
    """The ZIP of a batch, as an async stream of bytes.

    Holds, per image, `{id}/input.*` and, when it succeeded, `{id}/combined.png`,
    `mask.png`, `overlay.png` and `analysis.json`; plus `summary.csv` (one row per
    image, failures with their error, review verdict counts and disposition). Rows are
    read now; files while streaming.

    Raises:
        BatchNotFound: unknown batch id (raised before the first byte).
    """
    inspections = InspectionRepository(session)
    if await inspections.get_batch(batch_id) is None:
        raise BatchNotFound(f"no batch with id {batch_id}")
    items = await inspections.batch_items(batch_id)
    ids = [i.img_unique_id for i, _ in items]
    images = await ImageRepository(session).get_many(ids)
    reviews = ReviewRepository(session)
    verdicts, dispositions = await reviews.verdict_counts(ids), await reviews.dispositions_of(ids)
    members = [
        _BatchMember(
            inspection,
            images.get(inspection.img_unique_id),
            classes,
            verdicts.get(inspection.img_unique_id),
            dispositions.get(inspection.img_unique_id),
        )
        for inspection, classes in items
    ]
    return async_stream_zip(_zip_members(members, storage, service))


async def _zip_members(
    members: list[_BatchMember], storage: Storage, service: InspectionService
) -> AsyncIterator[tuple[str, datetime, int, Method, AsyncIterable[bytes]]]:
    now = datetime.now(UTC)
    mode = stat.S_IFREG | 0o644
    for member in members:
        img_id = member.inspection.img_unique_id
        files: list[tuple[str, Path]] = []
        try:
            input_path = storage.resolve(member.inspection.input_image_path)
            files.append((f"{img_id}/input{input_path.suffix}", input_path))
        except ValueError:
            pass
        if member.image is not None:
            folder = service.result_folder_of(member.image)
            files += [(f"{img_id}/{name}", folder / name) for name in RESULT_FILE_NAMES.values()]
            files.append((f"{img_id}/{ANALYSIS_FILE_NAME}", folder / ANALYSIS_FILE_NAME))
        for name, path in files:
            if path.is_file():
                yield name, now, mode, ZIP_AUTO(path.stat().st_size), _read_chunks(path)
    summary = _summary_csv(members).encode("utf-8")
    yield "summary.csv", now, mode, ZIP_AUTO(len(summary)), _one_chunk(summary)


async def _read_chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await anyio.open_file(path, "rb")
    async with handle:
        while chunk := await handle.read(CHUNK_BYTES):
            yield chunk


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _summary_csv(members: list[_BatchMember]) -> str:
    rows = []
    for m in members:
        image, classes = m.image, m.classes or {}
        succeeded = m.inspection.status == InspectionStatus.SUCCEEDED
        rows.append(
            [
                m.inspection.img_unique_id,
                m.inspection.original_filename,
                m.inspection.status.value,
                (image.timestamp if image else m.inspection.created_at).isoformat(),
                image.image_width if image else "",
                image.image_height if image else "",
                image.processing_time_seconds if image else "",
                sum(classes.values()) if succeeded else "",
                ";".join(f"{k}={v}" for k, v in sorted(classes.items())),
                m.inspection.last_error or "",
                ";".join(f"{k}={v}" for k, v in sorted((m.verdicts or {}).items())),
                m.disposition or "",
            ]
        )
    return csv_text(SUMMARY_COLUMNS, rows)

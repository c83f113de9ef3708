"""Downloads: single files, thumbnails, and batch ZIPs streamed as they are built.

Files come from the storage (a folder or an object store): a download names the
object's key, and the route sends the local file, streams the object, or redirects to
a presigned URL. The batch ZIP is produced by `stream-zip`: each member is read from
the storage in 64 KiB chunks while the archive streams out, so neither the archive nor
a whole member is ever held in memory or written to a temporary file.
"""

from __future__ import annotations

import contextlib
import functools
import io
import stat
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import anyio
from PIL import Image as PILImage
from sqlalchemy.ext.asyncio import AsyncSession
from stream_zip import ZIP_AUTO, Method, async_stream_zip

from app.errors import (
    BatchNotFound,
    ImageNotFound,
    InsufficientStorage,
    ResultNotReady,
    StorageUnavailable,
    StoredFileMissing,
)
from app.models.database import Image, Inspection, InspectionStatus
from app.services.history.repository import ImageRepository
from app.services.inspection.repository import InspectionRepository
from app.services.inspection.workflow import InspectionService
from app.services.review.audit_repository import AuditRepository
from app.services.review.repository import ReviewRepository
from app.services.storage import ANALYSIS_FILE_NAME, Storage, is_disk_full
from app.utils.ids import download_stem
from app.utils.spreadsheet import csv_text

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
    "folder",
    "verdicts",
    "reasons",
    "disposition",
)


@dataclass(frozen=True)
class FileToSend:
    """A stored file to answer with: its storage key, media type and download name, and
    the local file holding it with the folder backend (None with an object store)."""

    key: str
    media_type: str
    filename: str
    path: Path | None = None


async def image_file(
    session: AsyncSession, storage: Storage, img_unique_id: str, kind: str, *, verify: bool = True
) -> FileToSend:
    """The input or a result image of an inspection; `verify=False` skips the check that the
    object exists (one request to an object store) for a caller that reads it anyway.

    Raises:
        ImageNotFound: unknown id.
        ResultNotReady: a result image of an inspection that has no results.
        StoredFileMissing: the file is gone from storage.
    """
    if kind == "input":
        # The ledger row exists for every accepted image (stored or failed) and holds the
        # input's path and its media type as sniffed from the content.
        inspection = await InspectionRepository(session).get(img_unique_id)
        if inspection is None:
            raise ImageNotFound(f"no inspection with id {img_unique_id}")
        key = await _existing(
            storage, inspection.input_image_path, img_unique_id, "input image", verify
        )
        suffix = PurePosixPath(key).suffix.lower()
        stem = download_stem(inspection.original_filename, img_unique_id)
        return FileToSend(key, inspection.media_type, f"{stem}{suffix}", storage.local_file(key))
    image = await ImageRepository(session).get(img_unique_id)
    if image is None:
        await _raise_missing_result(session, img_unique_id)
    assert image is not None
    stem = await _stem(session, img_unique_id)
    stored_by_kind = {
        "combined": image.result_image_1_path,
        "mask": image.result_image_2_path,
        "overlay": image.result_image_3_path,
    }
    stored_path = stored_by_kind[kind]
    if stored_path is None:
        raise StoredFileMissing(f"inspection {img_unique_id} has no {kind} image")
    key = await _existing(storage, stored_path, img_unique_id, f"{kind} image", verify)
    return FileToSend(key, "image/png", f"{stem}_{kind}.png", storage.local_file(key))


async def _stem(session: AsyncSession, img_unique_id: str) -> str:
    inspection = await InspectionRepository(session).get(img_unique_id)
    return download_stem(inspection.original_filename if inspection else None, img_unique_id)


# Inputs a browser cannot show in an <img>: the viewer asks for a PNG rendition instead.
BROWSER_UNSHOWABLE = frozenset({"image/tiff", "image/bmp", "image/x-ms-bmp"})


async def input_png_file(
    session: AsyncSession,
    storage: Storage,
    img_unique_id: str,
    limiter: anyio.CapacityLimiter | None = None,
) -> FileToSend:
    """The input image as PNG, for browsers that cannot show TIFF (and, to be safe, BMP).

    JPEG and PNG inputs are answered as they are. Other inputs are converted once with
    Pillow (first frame, 16-bit and CMYK modes brought to 8-bit RGB/L) and the PNG is kept
    beside the thumbnails (`Storage.derived_key`, `thumbnails/{id}/input.png`), so every
    agent finds it and it is deleted with the inspection.

    Raises:
        ImageNotFound, StoredFileMissing: as for `image_file`.
        InsufficientStorage: no room on disk for the rendition (folder backend).
    """
    source = await image_file(session, storage, img_unique_id, "input", verify=False)
    if source.media_type not in BROWSER_UNSHOWABLE:
        return source
    key = storage.derived_key(img_unique_id, "input.png")
    name = f"{Path(source.filename).stem}.png"
    if not await storage.exists(key):
        what = f"the input image of {img_unique_id}"
        png = await _render(storage, source.key, what, limiter, _make_png)
        await _keep_rendition(storage, key, png, "image/png", name, "the PNG rendition")
    return FileToSend(key, "image/png", name, storage.local_file(key))


async def _render(
    storage: Storage,
    key: str,
    what: str,
    limiter: anyio.CapacityLimiter | None,
    make: Callable[[bytes], bytes],
) -> bytes:
    """`make` applied to the stored object `key`, in a thread. Reading and decoding both
    hold a token of `limiter`, so a gallery of big images holds at most that many
    originals in memory at once.

    Raises:
        StoredFileMissing: the object is gone (`what` names it in the message).
    """
    async with limiter if limiter is not None else contextlib.nullcontext():
        try:
            original = await storage.get(key)
        except FileNotFoundError as exc:
            raise StoredFileMissing(f"{what} is missing") from exc
        return await anyio.to_thread.run_sync(make, original)


async def _keep_rendition(
    storage: Storage, key: str, data: bytes, media_type: str, name: str | None, what: str
) -> None:
    """Store a rendition made from a stored file (thumbnail, PNG of a TIFF). Two requests
    at once both write it: the same bytes, each write atomic.

    Raises:
        InsufficientStorage: the disk is full (folder backend).
    """
    try:
        await storage.put(key, data, media_type, download_name=name)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise InsufficientStorage(
            f"the disk holding DATA_DIR is full: no room for {what}; free some space"
        ) from exc


def _make_png(original: bytes) -> bytes:
    """PNG bytes of the first frame of an image file's bytes."""
    buffer = io.BytesIO()
    with PILImage.open(io.BytesIO(original)) as img:
        frame = img if img.mode in ("1", "L", "LA", "P", "RGB", "RGBA") else _to_8bit(img)
        frame.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _to_8bit(img: PILImage.Image) -> PILImage.Image:
    """16-bit grey (I;16, I;16B, I) scaled to 8-bit L; anything else (CMYK, YCbCr, F) to
    RGB. Pillow's `point` takes no big-endian I;16B, so 16-bit modes go through I first."""
    if img.mode.startswith("I"):
        return img.convert("I").point(lambda v: v / 256).convert("L")
    return img.convert("RGB")


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
    key = service.analysis_key(image)
    if not await service.storage.exists(key):
        raise StoredFileMissing(f"the analysis JSON of {img_unique_id} is missing from storage")
    name = f"{await _stem(session, img_unique_id)}_analysis.json"
    return FileToSend(key, "application/json", name, service.storage.local_file(key))


async def thumbnail_file(
    session: AsyncSession,
    storage: Storage,
    img_unique_id: str,
    size: int,
    kind: str,
    limiter: anyio.CapacityLimiter | None = None,
) -> FileToSend:
    """A small JPEG of the input or overlay image (longest side `size` pixels), made once and
    kept in the storage beside the results (`thumbnails/{id}/`), so every agent finds it.

    Making one decodes the whole image (a JPEG at reduced scale), through `limiter` (the
    agent's decode limiter) so a gallery of big images cannot exhaust memory.

    Raises:
        ImageNotFound, ResultNotReady, StoredFileMissing: as for `image_file`.
        InsufficientStorage: the disk is full (folder backend).
    """
    # A cached thumbnail costs one check; the source is read only to make one.
    source = await image_file(session, storage, img_unique_id, kind, verify=False)
    key = storage.thumbnail_key(img_unique_id, kind, size)
    if not await storage.exists(key):
        what = f"the {kind} image of {img_unique_id}"
        thumb = await _render(
            storage, source.key, what, limiter, functools.partial(_make_thumbnail, size=size)
        )
        await _keep_rendition(storage, key, thumb, "image/jpeg", None, "the thumbnail")
    name = f"{img_unique_id}_{kind}_thumb.jpg"
    return FileToSend(key, "image/jpeg", name, storage.local_file(key))


def _make_thumbnail(original: bytes, size: int) -> bytes:
    buffer = io.BytesIO()
    with PILImage.open(io.BytesIO(original)) as img:
        img.draft("RGB", (size, size))
        thumb = img.convert("RGB")
        thumb.thumbnail((size, size))
        thumb.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


async def _existing(
    storage: Storage, stored: str, img_unique_id: str, what: str, verify: bool = True
) -> str:
    try:
        key = storage.key_of(stored)
    except ValueError as exc:
        raise StoredFileMissing(f"the {what} of {img_unique_id} is not in storage") from exc
    if verify and not await storage.exists(key):
        raise StoredFileMissing(f"the {what} of {img_unique_id} is missing from storage ({stored})")
    return key


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
    reasons: dict[str, int] | None = None


async def batch_zip(
    session: AsyncSession,
    storage: Storage,
    service: InspectionService,
    batch_id: str,
    viewer: str | None = None,
) -> AsyncIterable[bytes]:
    """The ZIP of a batch, as an async stream of bytes.

    Holds, per image, a folder `{original name without extension}_{id}` (see
    `download_stem`) with `input.*` and, when it succeeded, `combined.png`, `mask.png`,
    `overlay.png` and `analysis.json`; plus `summary.csv` (one row per image, failures
    with their error, review verdict counts, reason counts and disposition, and its
    folder). Rows are read now; files while streaming. The boards whose first review is
    hidden from `viewer` (the reviewer downloading: they audit it or may audit it) show no
    verdicts, reasons or disposition (docs/review.md).

    The store is checked before the first byte; a file missing while streaming is left
    out (deleted meanwhile: the summary still lists it) unless the store itself is gone.
    A failure while streaming ends the stream with `StorageUnavailable`: the answer has
    begun, so the server breaks the connection and the client sees an incomplete
    transfer, never a clean end of a truncated ZIP (docs/exports.md).

    Raises:
        BatchNotFound: unknown batch id (raised before the first byte).
        StorageUnavailable: the store does not answer (before the first byte; or, from
            the stream, while it streams).
    """
    inspections = InspectionRepository(session)
    if await inspections.get_batch(batch_id) is None:
        raise BatchNotFound(f"no batch with id {batch_id}")
    store = await storage.check()
    if store.state != "ok":
        raise StorageUnavailable(f"the batch ZIP cannot be read now: {store.detail}")
    items = await inspections.batch_items(batch_id)
    ids = [i.img_unique_id for i, _ in items]
    images = await ImageRepository(session).get_many(ids)
    reviews = ReviewRepository(session)
    verdicts, dispositions = await reviews.verdict_counts(ids), await reviews.dispositions_of(ids)
    reasons = await reviews.reason_counts(ids)
    if viewer is not None:
        for hidden in await AuditRepository(session).blind_among(ids, viewer):
            for review in (verdicts, dispositions, reasons):
                review.pop(hidden, None)
    members = [
        _BatchMember(
            inspection,
            images.get(inspection.img_unique_id),
            classes,
            verdicts.get(inspection.img_unique_id),
            dispositions.get(inspection.img_unique_id),
            reasons.get(inspection.img_unique_id),
        )
        for inspection, classes in items
    ]
    return async_stream_zip(_zip_members(members, storage, service))


def _member_keys(
    member: _BatchMember, storage: Storage, service: InspectionService
) -> list[tuple[str, str]]:
    """(name in the ZIP, storage key) of each file of one batch image."""
    img_id = download_stem(member.inspection.original_filename, member.inspection.img_unique_id)
    files: list[tuple[str, str]] = []
    stored: list[tuple[str, str | None]] = [("input", member.inspection.input_image_path)]
    if member.image is not None:
        image = member.image
        stored += [
            ("combined", image.result_image_1_path),
            ("mask", image.result_image_2_path),
            ("overlay", image.result_image_3_path),
        ]
    for kind, path in stored:
        try:
            key = storage.key_of(path) if path else None
        except ValueError:
            key = None
        if key is not None:
            suffix = PurePosixPath(key).suffix
            files.append((f"{img_id}/{kind}{suffix}", key))
    if member.image is not None:
        files.append((f"{img_id}/{ANALYSIS_FILE_NAME}", service.analysis_key(member.image)))
    return files


async def _zip_members(
    members: list[_BatchMember], storage: Storage, service: InspectionService
) -> AsyncIterator[tuple[str, datetime, int, Method, AsyncIterable[bytes]]]:
    now = datetime.now(UTC)
    mode = stat.S_IFREG | 0o644
    for member in members:
        for name, key in _member_keys(member, storage, service):
            try:
                stream = await storage.open_stream(key)
            except FileNotFoundError:
                store = await storage.check()
                if store.state != "ok":  # not one file deleted: the whole store is gone
                    raise StorageUnavailable(store.detail or "the store is gone") from None
                continue  # deleted meanwhile: the summary still lists the image
            yield name, now, mode, ZIP_AUTO(stream.size), stream.chunks
    summary = _summary_csv(members).encode("utf-8")
    yield "summary.csv", now, mode, ZIP_AUTO(len(summary)), _one_chunk(summary)


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
                download_stem(m.inspection.original_filename, m.inspection.img_unique_id),
                ";".join(f"{k}={v}" for k, v in sorted((m.verdicts or {}).items())),
                ";".join(f"{k}={v}" for k, v in sorted((m.reasons or {}).items())),
                m.disposition or "",
            ]
        )
    return csv_text(SUMMARY_COLUMNS, rows)

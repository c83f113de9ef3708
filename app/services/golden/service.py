"""The golden-board workflow: the library (API-added images in the storage, GOLDEN_DIR's
files on disk), matching an inspection to its golden board, registering it once, crops.

Registration runs **lazily**, on the first request that needs it (`GET
/api/images/{id}/golden` or its crop; the viewer asks when it opens a result), and is kept
in `golden_registrations`, so every later request is one primary-key query plus a slice of
the golden image, which each process keeps decoded in memory (`GoldenLibrary`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
import numpy as np
from fastapi import Request
from PIL import Image as PILImage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.errors import (
    BadImage,
    ImageNotFound,
    ImageTooLarge,
    ResultNotReady,
    StoredFileMissing,
    UnsupportedImage,
)
from app.models.database import GoldenBoard, GoldenRegistration, Image
from app.services.database.session import unit_of_work
from app.services.golden import imaging
from app.services.golden.errors import CropOutsideImage, GoldenNotFound, InvalidGoldenImage
from app.services.golden.repository import FolderGolden, GoldenRepository
from app.services.inspection.receiver import ReceivedFile, discard, receive_image
from app.services.inspection.repository import InspectionRepository
from app.services.inspection.workflow import InspectionService
from app.services.storage import Storage
from app.services.storage.base import GOLDEN
from app.utils.background import BackgroundTaskSet
from app.utils.images import ImageInfo, sniff_format, validate_image

logger = logging.getLogger(__name__)

GOLDEN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_GOLDEN_ID = re.compile(GOLDEN_ID_PATTERN)
FOLDER_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
# Coarse candidates registered in full: the best by coarse correlation, and the next ones
# while close to it (boards of one product look alike at 1/8 scale).
CANDIDATES = 3
COARSE_MARGIN = 0.05
# Decoded golden images kept per process (each width x height x 1 or 3 bytes).
CACHED_GOLDENS = 64


@dataclass(frozen=True)
class GoldenMatch:
    """An inspection's golden board and where it lies: golden pixel (x, y) is at
    (x + dx, y + dy) in the inspected image (pixels); `score` -1..1; `method` `model`
    (the model service's template) or `agent` (the agent's phase correlation)."""

    board: GoldenBoard
    dx: float
    dy: float
    score: float | None
    method: str
    image_width: int
    image_height: int


class GoldenLibrary:
    """The per-process part of the library: decoded golden images (LRU, keyed by id and
    version) and whether GOLDEN_DIR was indexed yet."""

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        limiter: anyio.CapacityLimiter,
        sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.limiter = limiter
        self.sessions = sessions
        self._pixels: OrderedDict[tuple[str, str], imaging.GoldenPixels] = OrderedDict()
        self._indexed = False
        self._index_lock = asyncio.Lock()

    async def ensure_indexed(self, *, again: bool = False) -> None:
        """Index GOLDEN_DIR into the library (once per process, or `again`), in a
        transaction of its own: committed whatever the request that asked answers."""
        folder = self.settings.golden_dir
        if folder is None or (self._indexed and not again):
            return
        async with self._index_lock:
            if self._indexed and not again:
                return
            found = await anyio.to_thread.run_sync(
                scan_folder, folder, self.settings.max_image_pixels
            )
            async with unit_of_work(self.sessions) as session:
                await GoldenRepository(session).sync_folder(found)
            self._indexed = True

    async def remember(self, registration: GoldenRegistration) -> None:
        """Keep a registration in a transaction of its own: one that found no golden board
        is answered 404, which rolls the request's own transaction back."""
        async with unit_of_work(self.sessions) as session:
            await GoldenRepository(session).save_registration(registration)

    async def read_bytes(self, board: GoldenBoard) -> bytes:
        """The golden image file's bytes.

        Raises:
            StoredFileMissing: the file is gone (from the storage or GOLDEN_DIR).
        """
        try:
            if board.source == "folder":
                return await anyio.Path(board.image_path).read_bytes()
            return await self.storage.get(board.image_path)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise StoredFileMissing(f"the golden image {board.golden_id} is missing") from exc

    async def pixels(self, board: GoldenBoard) -> imaging.GoldenPixels:
        """The decoded golden image (cached; decoded in a thread through the decode limiter).

        Raises:
            StoredFileMissing: the file is gone or no longer decodes.
        """
        key = (board.golden_id, board.version)
        cached = self._pixels.get(key)
        if cached is not None:
            self._pixels.move_to_end(key)
            return cached
        async with self.limiter:
            data = await self.read_bytes(board)
            try:
                decoded = await anyio.to_thread.run_sync(imaging.golden_pixels, data)
            except (OSError, ValueError, SyntaxError) as exc:
                raise StoredFileMissing(
                    f"the golden image {board.golden_id} no longer decodes: {exc}"
                ) from exc
        self._pixels[key] = decoded
        while len(self._pixels) > CACHED_GOLDENS:
            self._pixels.popitem(last=False)
        return decoded


def scan_folder(folder: Path, max_pixels: int) -> list[FolderGolden]:
    """The golden images of `folder` (not its subfolders): accepted formats by content,
    ids from file stems; unreadable files and stems that are not valid ids are skipped with
    a warning. Reads only each file's header. Blocking: run it in a thread."""
    if not folder.is_dir():
        logger.warning("GOLDEN_DIR %s is not a folder: no golden image from it", folder)
        return []
    found: list[FolderGolden] = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in FOLDER_SUFFIXES or not path.is_file():
            continue
        if not _GOLDEN_ID.match(path.stem):
            logger.warning("GOLDEN_DIR: %s skipped: its stem is not a valid golden id", path.name)
            continue
        try:
            with path.open("rb") as fh:
                _, media_type, _ = sniff_format(fh.read(16), path.name)
            with PILImage.open(path) as img:
                width, height = img.size
            if width * height > max_pixels:
                raise ValueError(f"more than {max_pixels} pixels (MAX_IMAGE_PIXELS)")
            stat = path.stat()
        except (OSError, ValueError, SyntaxError, BadImage, UnsupportedImage) as exc:
            logger.warning("GOLDEN_DIR: %s skipped: %s", path.name, exc)
            continue
        found.append(
            FolderGolden(
                golden_id=path.stem,
                file_name=path.name,
                image_path=str(path.resolve()),
                media_type=media_type,
                image_width=width,
                image_height=height,
                size_bytes=stat.st_size,
                version=f"{stat.st_size}-{stat.st_mtime_ns}",
            )
        )
    return found


class GoldenService:
    """Golden-board operations over one request's session."""

    def __init__(
        self, session: AsyncSession, library: GoldenLibrary, inspections: InspectionService
    ) -> None:
        self.session = session
        self.repository = GoldenRepository(session)
        self.library = library
        self.inspections = inspections
        self.settings = library.settings

    # -- the library ---------------------------------------------------------------------

    async def list(self) -> list[GoldenBoard]:
        """Every golden board (GOLDEN_DIR indexed again first, so new files show), by id."""
        await self.library.ensure_indexed(again=True)
        return list(await self.repository.list())

    async def get(self, golden_id: str) -> GoldenBoard:
        """The golden board `golden_id`.

        Raises:
            GoldenNotFound: no such golden id.
        """
        await self.library.ensure_indexed()
        board = await self.repository.get(golden_id)
        if board is None:
            raise GoldenNotFound(f"no golden image with id {golden_id}")
        return board

    async def put_upload(
        self, request: Request, golden_id: str, product: str | None, side: str | None
    ) -> tuple[GoldenBoard, bool]:
        """Receive the image in the multipart field `image` of `request` (at most
        MAX_FILE_SIZE_MB bytes) and `put` it; the scratch file is always removed.

        Raises: the receiver's errors (400/408/413/415, docs/ingestion.md) and `put`'s.
        """
        files = await receive_image(request, self.settings, self.library.storage)
        try:
            return await self.put(golden_id, files[0], product, side)
        finally:
            await discard(files)

    async def put(
        self, golden_id: str, received: ReceivedFile, product: str | None, side: str | None
    ) -> tuple[GoldenBoard, bool]:
        """Add or replace the golden image `golden_id` from an upload received to a scratch
        file: validated as an upload is (format by content, whole decode,
        MAX_IMAGE_PIXELS), moved into the storage, its row written; registrations that used
        it, or found none, are forgotten. Returns the row and whether it was new.

        Raises:
            BadUploadRequest: the file part was refused (e.g. control characters in its name).
            ImageTooLarge: over MAX_FILE_SIZE_MB or MAX_IMAGE_PIXELS.
            UnsupportedImage: not JPEG, PNG, TIFF or BMP by content.
            InvalidGoldenImage: empty, truncated, corrupt or several pages.
        """
        if received.problem is not None:
            raise received.problem
        if received.too_large or received.path is None or received.sha256 is None:
            raise ImageTooLarge(
                f"'{received.filename}' is larger than {self.settings.max_file_size_mb:g} MiB"
                " (MAX_FILE_SIZE_MB)"
            )
        # The name a model service's `provenance.template` is matched to: the last part of
        # the client's path.
        file_name = received.filename.replace("\\", "/").rsplit("/", 1)[-1] or golden_id
        info = await self._validate(received.path, file_name)
        await self.library.ensure_indexed()
        before = await self.repository.get(golden_id)
        # Read now: the row object is refreshed in place by the save.
        old_key = before.image_path if before is not None and before.source == "api" else None
        created = before is None
        key = f"{GOLDEN}/{golden_id}/{received.sha256[:16]}{info.suffix}"
        await self.library.storage.keep_input(received.path, key, info.media_type, file_name)
        received.path = None  # moved into the storage: no scratch file to discard
        board = await self.repository.save(
            GoldenBoard(
                golden_id=golden_id,
                product=product,
                side=side,
                file_name=file_name,
                image_path=key,
                media_type=info.media_type,
                image_width=info.width,
                image_height=info.height,
                size_bytes=received.size_bytes,
                version=received.sha256,
                source="api",
            )
        )
        if old_key is not None and old_key != key:
            await self.library.storage.delete([old_key])
        return board, created

    async def _validate(self, path: Path, file_name: str) -> ImageInfo:
        """`validate_image` in a thread, through the decode limiter.

        Raises:
            InvalidGoldenImage: empty, truncated, corrupt or several pages (as 422).
            UnsupportedImage, ImageTooLarge: as `validate_image`.
        """
        try:
            async with self.library.limiter:
                return await anyio.to_thread.run_sync(
                    validate_image, path, file_name, self.settings.max_image_pixels
                )
        except BadImage as exc:
            raise InvalidGoldenImage(exc.detail) from exc

    async def delete(self, golden_id: str) -> GoldenBoard:
        """Remove the golden image `golden_id` (row and stored file; a GOLDEN_DIR file stays
        on disk and comes back at the next index unless removed there).

        Raises:
            GoldenNotFound: no such golden id.
        """
        await self.library.ensure_indexed()
        board = await self.repository.delete(golden_id)
        if board is None:
            raise GoldenNotFound(f"no golden image with id {golden_id}")
        if board.source == "api":
            await self.library.storage.delete([board.image_path])
        return board

    # -- one inspection ------------------------------------------------------------------

    async def match(self, img_unique_id: str) -> GoldenMatch:
        """The golden board of a stored inspection and its registration, computed on the
        first call and then read from `golden_registrations`.

        The model service's own template wins when it reports one (`engine` `template`,
        `provenance.template` the file name of a golden image of the library, with its
        `registration_offset`); otherwise the library's boards of the image's size are
        ranked by coarse correlation and the best ones registered by phase correlation.

        Raises:
            ImageNotFound: no inspection with this id.
            ResultNotReady: the inspection has no stored result yet.
            GoldenNotFound: no golden board matches (none of its size, or the best one's
                score is below GOLDEN_MIN_MATCH_SCORE).
        """
        cached = await self.repository.registration_with_board(img_unique_id)
        if cached is None:
            await self._raise_no_result(img_unique_id)
        assert cached is not None
        width, height, registration, board = cached
        if registration is None:
            await self.library.ensure_indexed()
            registration, board = await self._register(img_unique_id)
            if board is None:
                await self.library.remember(registration)
            else:
                await self.repository.save_registration(registration)
        if board is None or registration.dx is None or registration.dy is None:
            raise GoldenNotFound(f"no golden image matches the board of {img_unique_id}")
        return GoldenMatch(
            board, registration.dx, registration.dy, registration.score,
            registration.method, width, height,
        )  # fmt: skip

    async def _raise_no_result(self, img_unique_id: str) -> None:
        inspection = await InspectionRepository(self.session).get(img_unique_id)
        if inspection is None:
            raise ImageNotFound(f"no inspection with id {img_unique_id}")
        raise ResultNotReady(
            f"inspection {img_unique_id} is {inspection.status.value} and has no result yet"
        )

    async def _register(self, img_unique_id: str) -> tuple[GoldenRegistration, GoldenBoard | None]:
        image = await self.repository.image(img_unique_id)
        assert image is not None
        from_model = await self._from_model(image)
        if from_model is not None:
            return from_model
        candidates = await self.repository.of_size(image.image_width, image.image_height)
        none = GoldenRegistration(img_unique_id=img_unique_id, method="none")
        if not candidates:
            return none, None
        goldens, usable = [], []
        for board in candidates:
            try:
                goldens.append(await self.library.pixels(board))
                usable.append(board)
            except StoredFileMissing as exc:
                # One lost file must not hide the rest of the library.
                logger.warning("golden image skipped: %s", exc.detail)
        if not usable:
            return none, None
        candidates = usable
        inspected = await self._inspected_grey(image)
        best: tuple[imaging.Registration, GoldenBoard] | None = None
        async with self.library.limiter:
            coarse = await anyio.to_thread.run_sync(imaging.coarse_scores, inspected, goldens)
            order = [int(i) for i in np.argsort(-np.asarray(coarse))[:CANDIDATES]]
            for rank, index in enumerate(order):
                if rank and coarse[index] < coarse[order[0]] - COARSE_MARGIN:
                    break
                found = await anyio.to_thread.run_sync(
                    imaging.register, inspected, goldens[index].grey
                )
                if best is None or found.score > best[0].score:
                    best = (found, candidates[index])
        assert best is not None
        found, board = best
        if not math.isfinite(found.score) or found.score < self.settings.golden_min_match_score:
            logger.info(
                "no golden board for %s: best %s scores %.3f (GOLDEN_MIN_MATCH_SCORE %.2f)",
                img_unique_id, board.golden_id, found.score, self.settings.golden_min_match_score,
            )  # fmt: skip
            return none, None
        return (
            GoldenRegistration(
                img_unique_id=img_unique_id,
                golden_id=board.golden_id,
                dx=round(found.dx, 2),
                dy=round(found.dy, 2),
                score=round(found.score, 4),
                method="agent",
            ),
            board,
        )

    async def _from_model(self, image: Image) -> tuple[GoldenRegistration, GoldenBoard] | None:
        """The registration the model service reported, when its template is a golden image
        of the library (same file name); else None."""
        try:
            analysis = await self.inspections.read_analysis(image)
        except StoredFileMissing:
            return None
        provenance = analysis.get("provenance")
        if analysis.get("engine") != "template" or not isinstance(provenance, dict):
            return None
        template, offset = provenance.get("template"), provenance.get("registration_offset")
        if not isinstance(template, str) or not isinstance(offset, dict):
            return None
        dx, dy = _number(offset.get("x")), _number(offset.get("y"))
        if dx is None or dy is None:
            return None
        board = await self.repository.by_file_name(PurePosixPath(template).name)
        if board is None:
            return None
        return (
            GoldenRegistration(
                img_unique_id=image.img_unique_id,
                golden_id=board.golden_id,
                dx=dx,
                dy=dy,
                score=_number(provenance.get("match_score")),
                method="model",
            ),
            board,
        )

    async def _inspected_grey(self, image: Image) -> Any:
        """The inspected input image as grey `float32`, decoded in a thread."""
        inspection = await InspectionRepository(self.session).get(image.img_unique_id)
        stored = inspection.input_image_path if inspection else image.input_image_path
        storage = self.library.storage
        async with self.library.limiter:
            try:
                data = await storage.get(storage.key_of(stored))
            except (FileNotFoundError, ValueError) as exc:
                raise StoredFileMissing(
                    f"the input image of {image.img_unique_id} is missing from storage"
                ) from exc
            return await anyio.to_thread.run_sync(lambda: imaging.to_grey(imaging.decode(data)))

    async def crop(self, img_unique_id: str, x: int, y: int, width: int, height: int) -> bytes:
        """PNG of the golden image's part under the inspected box `(x, y, width, height)`
        (inspected-image pixels), padded black outside the golden image (see
        `imaging.crop`).

        Raises:
            CropOutsideImage: the box is not within the inspected image.
            ImageNotFound, ResultNotReady, GoldenNotFound: as for `match`.
        """
        found = await self.match(img_unique_id)
        if x + width > found.image_width or y + height > found.image_height:
            box = {"x": x, "y": y, "width": width, "height": height}
            raise CropOutsideImage(
                f"the box x={x}, y={y}, width={width}, height={height} is not within the"
                f" {found.image_width} x {found.image_height} px inspected image",
                box,
            )
        golden = await self.library.pixels(found.board)
        return await anyio.to_thread.run_sync(
            lambda: imaging.png_bytes(
                imaging.crop(golden.pixels, x, y, width, height, found.dx, found.dy)
            )
        )

    async def image_bytes(self, golden_id: str) -> tuple[GoldenBoard, bytes]:
        """The golden image file of `golden_id` and its row.

        Raises:
            GoldenNotFound: no such golden id.
            StoredFileMissing: its file is gone.
        """
        board = await self.get(golden_id)
        return board, await self.library.read_bytes(board)


def _number(value: object) -> float | None:
    """`value` as a finite float, or None when it is not a finite JSON number."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


class GoldenRegistrar:
    """Registers freshly stored inspections with their golden board in the background
    (GOLDEN_REGISTER_ON_STORE), so that the review station's first `GET /golden` and its
    crops find the registration cached instead of computing it (one phase correlation,
    about 0.3 s of CPU per board) while the reviewer waits.

    `after_stored` only starts a task (kept until done); the registration runs under the
    library's decode limiter, and any error is logged, never raised to the inspection. A
    library with no golden board costs one indexed `SELECT … LIMIT 1` per inspection.
    """

    def __init__(
        self,
        library: GoldenLibrary,
        inspections: InspectionService,
        sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        self.library = library
        self.inspections = inspections
        self.sessions = sessions
        self._tasks = BackgroundTaskSet()

    def after_stored(self, img_unique_id: str) -> None:
        """Start registering the stored inspection `img_unique_id`."""
        self._tasks.start(self._register(img_unique_id), name="golden-register")

    async def _register(self, img_unique_id: str) -> None:
        try:
            await self.library.ensure_indexed()
            async with unit_of_work(self.sessions) as session:
                if not await GoldenRepository(session).any():
                    return
                await GoldenService(session, self.library, self.inspections).match(img_unique_id)
        except GoldenNotFound:
            pass  # no golden board matches: remembered, answered 404 on view
        except Exception:
            logger.exception("golden registration failed", extra={"img": img_unique_id})

    async def drain(self) -> None:
        """Wait for the registrations in flight (at shutdown, and in tests)."""
        await self._tasks.drain()

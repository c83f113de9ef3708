"""The folder backend: objects are files under DATA_DIR (STORAGE_URL unset or a folder).

Keys map to files: `uploads/...` under UPLOAD_DIR, `results/...` under RESULT_DIR,
anything else under the store's folder (DATA_DIR, or the folder STORAGE_URL names).
Every write goes to a temporary name first, is flushed to disk and renamed into place,
so a reader never sees half a file. Scratch files default to UPLOAD_DIR/.incoming, on the
same disk as the inputs, so keeping one is a rename.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path, PurePosixPath

import anyio

from app.config import Settings
from app.services.storage.base import (
    CHUNK_BYTES,
    INCOMING_DIR_NAME,
    RESULTS,
    THUMBNAILS,
    UPLOADS,
    ObjectStream,
    ResultObject,
    Storage,
    StoreCheck,
    StoredObject,
)


class LocalStorage(Storage):
    """Objects as files in local folders (see the module's docstring)."""

    backend = "local"

    def __init__(self, settings: Settings, root: Path | None = None) -> None:
        super().__init__(settings)
        if root is not None:
            self.data_dir = root.expanduser().resolve()
            if settings.upload_dir is None:
                self.upload_dir = self.data_dir / UPLOADS
            if settings.result_dir is None:
                self.result_dir = self.data_dir / RESULTS
            if settings.scratch_dir is None:
                self.scratch_dir = self.upload_dir / INCOMING_DIR_NAME

    @staticmethod
    def default_scratch_dir(settings: Settings) -> Path:
        """SCRATCH_DIR, else UPLOAD_DIR/.incoming."""
        if settings.scratch_dir is not None:
            return settings.scratch_dir.expanduser().resolve()
        return settings.resolved_upload_dir / INCOMING_DIR_NAME

    @property
    def location(self) -> str:
        """The store's folder."""
        return str(self.data_dir)

    @property
    def disk_path(self) -> Path:
        """DATA_DIR: inputs and results land on its disk."""
        return self.data_dir

    def ensure_directories(self) -> None:
        """Create the storage folders if missing."""
        for folder in (self.upload_dir, self.result_dir, self.scratch_dir, self.data_dir):
            folder.mkdir(parents=True, exist_ok=True)

    def path_of(self, key: str) -> Path:
        """The file of a key.

        Raises:
            ValueError: `key` is not a key (see `Storage.key_of`).
        """
        parts = PurePosixPath(self.key_of(key)).parts
        if parts[0] == UPLOADS:
            return self.upload_dir.joinpath(*parts[1:])
        if parts[0] == RESULTS:
            return self.result_dir.joinpath(*parts[1:])
        return self.data_dir.joinpath(*parts)

    # -- primitives ----------------------------------------------------------------------

    async def keep_input(
        self, incoming: Path, key: str, media_type: str, download_name: str | None = None
    ) -> None:
        """Move the scratch file into place (a rename on the same disk, else a copy);
        `download_name` is not kept (the agent sends its files itself)."""
        await anyio.to_thread.run_sync(_move, incoming, self.path_of(key))

    async def put(
        self,
        key: str,
        data: bytes,
        media_type: str | None = None,
        download_name: str | None = None,
    ) -> None:
        """Write through a temporary file in the same folder and a rename; `download_name`
        is not kept (the agent sends its files itself)."""
        path = self.path_of(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)

        await anyio.to_thread.run_sync(write)

    async def put_results(self, objects: Sequence[ResultObject]) -> None:
        """All the files in one worker-thread hop instead of one per file (each hop costs
        the event loop a thread hand-off; issue 8 §5); each goes through `atomic_write`
        (temporary file, fsync, rename).

        Raises:
            OSError: a write failed (e.g. a full disk: `is_disk_full`).
        """
        files = [(self.path_of(obj.key), obj.data) for obj in objects]

        def write_all() -> None:
            for folder in {path.parent for path, _ in files}:
                folder.mkdir(parents=True, exist_ok=True)
            for path, data in files:
                atomic_write(path, data)

        await anyio.to_thread.run_sync(write_all)

    async def get(self, key: str) -> bytes:
        """The file's bytes (FileNotFoundError when missing)."""
        return await anyio.to_thread.run_sync(self.path_of(key).read_bytes)

    async def open_stream(self, key: str) -> ObjectStream:
        """The file in 64 KiB chunks."""
        path = self.path_of(key)
        handle = await anyio.open_file(path, "rb")
        size = (await anyio.Path(path).stat()).st_size

        async def chunks() -> AsyncIterator[bytes]:
            async with handle:
                while chunk := await handle.read(CHUNK_BYTES):
                    yield chunk

        return ObjectStream(size, chunks())

    async def exists(self, key: str) -> bool:
        """Whether the file exists."""
        try:
            path = self.path_of(key)
        except ValueError:
            return False
        return await anyio.to_thread.run_sync(path.is_file)

    async def check(self) -> StoreCheck:
        """As `Storage.check`, and first (never cached) whether the store's folders are
        there: `unavailable`, naming the one missing, when one is not (e.g. a network
        share gone, a disk unmounted)."""

        def missing() -> Path | None:
            folders = (self.data_dir, self.upload_dir, self.result_dir)
            return next((folder for folder in folders if not folder.is_dir()), None)

        folder = await anyio.to_thread.run_sync(missing)
        if folder is not None:
            return StoreCheck(
                "unavailable",
                f"the storage folder {folder} is missing (a share or disk gone?); bring it"
                " back or check DATA_DIR, UPLOAD_DIR and RESULT_DIR",
            )
        return await super().check()

    def local_file(self, key: str) -> Path | None:
        """The file itself."""
        return self.path_of(key)

    async def presigned_url(self, key: str) -> str | None:
        """Never: files are sent by the agent."""
        return None

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete the files; empty folders are left for the next upload of the day."""
        paths = [self.path_of(k) for k in keys]

        def remove() -> None:
            for path in paths:
                path.unlink(missing_ok=True)

        await anyio.to_thread.run_sync(remove)

    async def delete_prefix(self, prefix: str) -> None:
        """Delete the folder of `prefix` and everything in it."""
        folder = self.path_of(prefix.rstrip("/"))
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))

    async def remove_inspection_files(
        self, input_stored: str | None, img_unique_id: str, accepted_at: datetime | None
    ) -> None:
        """As `Storage.remove_inspection_files`, and the thumbnails older versions cached
        flat in `thumbnails/` (`{img_unique_id}_{kind}_{size}.jpg`)."""
        await super().remove_inspection_files(input_stored, img_unique_id, accepted_at)
        folder = self.data_dir / THUMBNAILS

        def remove_flat() -> None:
            for old in folder.glob(f"{img_unique_id}_*.jpg"):
                old.unlink(missing_ok=True)

        await anyio.to_thread.run_sync(remove_flat)

    async def list_objects(self, prefix: str) -> AsyncIterator[StoredObject]:
        """The files under the folder of `prefix`, walked in a thread one folder at a
        time; names starting with `.` (scratch and temporary files) are left out."""
        folder_key = prefix.rstrip("/")
        pending = [(self.path_of(folder_key), folder_key)]
        while pending:
            folder, key = pending.pop()
            entries = await anyio.to_thread.run_sync(_scan, folder)
            for name, is_dir, size, modified in entries:
                if name.startswith("."):
                    continue
                if is_dir:
                    pending.append((folder / name, f"{key}/{name}"))
                else:
                    yield StoredObject(f"{key}/{name}", size, modified)


def _scan(folder: Path) -> list[tuple[str, bool, int, float]]:
    """(name, is a folder, size, mtime) of each entry of `folder`; [] when it is gone."""
    out = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    info = entry.stat()
                    out.append((entry.name, entry.is_dir(), info.st_size, info.st_mtime))
                except OSError:  # removed meanwhile
                    continue
    except (FileNotFoundError, NotADirectoryError):
        return []
    return out


def _move(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, destination)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # SCRATCH_DIR on another disk: copy under a temporary name, then rename.
        tmp = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.tmp")
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, destination)
        finally:
            tmp.unlink(missing_ok=True)
        source.unlink(missing_ok=True)


# "No space left on device" and "disk quota exceeded" (EDQUOT is POSIX-only; Windows
# reports a full disk as ENOSPC too).
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` is a write that failed because the disk (or the quota) is full."""
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

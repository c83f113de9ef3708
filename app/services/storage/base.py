"""The storage interface: where inputs, result images, analysis JSON and thumbnails are kept.

Everything that reads or writes those files goes through a `Storage`; no other code
touches their paths. Two backends implement it: a folder (`local.LocalStorage`, the
default) and an S3-compatible object store (`s3.S3Storage`); `open_storage` picks one
from STORAGE_URL.

Objects are named by **keys**, `/`-separated and relative to the store's root; the
database stores keys (`images.*_path`, `inspections.input_image_path`):

    uploads/YYYYMMDD/{YYYYMMDD_HHMMSS}_{img_unique_id}_{safe original name}
    results/YYYYMMDD/{img_unique_id}/combined.png | mask.png | overlay.png | analysis.json
    answers/YYYYMMDD/{img_unique_id}/{token}/combined.png | mask.png | overlay.png
    thumbnails/{img_unique_id}/{kind}_{size}.jpg

Rows written before object storage may hold other forms of the same file (an absolute
path, or a path relative to DATA_DIR when UPLOAD_DIR or RESULT_DIR were moved);
`key_of` turns any of them into its key, so nothing stored needs rewriting.

Received uploads are streamed to a local **scratch** file first (SCRATCH_DIR) and then
kept under their key; with the object store the scratch file is removed at once.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, ClassVar, Literal, NamedTuple

import anyio

from app.config import Settings
from app.errors import StorageMisconfigured, StorageUnavailable
from app.utils import fastjson
from app.utils.ids import safe_filename

RESULT_FILE_NAMES = {
    "combined": "combined.png",
    "mask": "mask.png",
    "overlay": "overlay.png",
}
ANALYSIS_FILE_NAME = "analysis.json"
INCOMING_DIR_NAME = ".incoming"
UPLOADS = "uploads"
RESULTS = "results"
THUMBNAILS = "thumbnails"
# Answers of model services other than the primary one (shadow runs, replays:
# app/services/models), never mixed with an inspection's `results/`.
ANSWERS = "answers"
# Golden images added through the API (app/services/golden); not swept as orphans.
GOLDEN = "golden"
# Read streams hand out chunks of about this size, bytes.
CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class StoredObject:
    """One object of the store: its key, size (bytes) and last change (epoch seconds)."""

    key: str
    size: int
    modified: float


class ResultObject(NamedTuple):
    """One result object to write: key, bytes, media type, download name (see `put`)."""

    key: str
    data: bytes
    media_type: str
    download_name: str | None


@dataclass(frozen=True)
class ObjectStream:
    """An object being read: its size (bytes) and its bytes as an async stream of chunks.

    The stream must be read to its end or closed with `aclose()`.
    """

    size: int
    chunks: AsyncIterator[bytes]

    async def aclose(self) -> None:
        """Stop reading and release the connection or file handle."""
        closer = getattr(self.chunks, "aclose", None)
        if closer is not None:
            await closer()


@dataclass(frozen=True)
class DiskUsage:
    """Total, used and free bytes of the local disk the agent still needs (DATA_DIR with
    the folder backend; SCRATCH_DIR with the object store)."""

    total: int
    used: int
    free: int


# A key looked up (never written) by `Storage.check`.
HEALTH_PROBE_KEY = "health/probe"
# `Storage.check` answers from its last look this long, so /health stays cheap, seconds.
STORE_CHECK_CACHE_S = 5.0

StoreState = Literal["ok", "unavailable", "misconfigured"]


@dataclass(frozen=True)
class StoreCheck:
    """What `Storage.check` found: `ok`; `unavailable` (down, overloaded: waited out);
    or `misconfigured` (missing bucket, refused credentials: an operator must act), with
    a sentence in `detail` saying what failed and what to do."""

    state: StoreState
    detail: str | None = None


class Storage(ABC):
    """Where the agent keeps its files, and the only code that touches them.

    Methods are async (the folder backend runs file I/O in threads). Reads of a missing
    object raise `FileNotFoundError`; a stored path that is not a valid key raises
    `ValueError`. The object store raises `StorageUnavailable` (503) when it is down and
    `StorageMisconfigured` (a subclass) when its bucket is missing or it refuses the
    credentials, from every method.
    """

    backend: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.resolved_data_dir
        self.upload_dir = settings.resolved_upload_dir
        self.result_dir = settings.resolved_result_dir
        self.scratch_dir = self.default_scratch_dir(settings)
        self._last_check: tuple[float, StoreCheck] | None = None

    @staticmethod
    @abstractmethod
    def default_scratch_dir(settings: Settings) -> Path:
        """SCRATCH_DIR when set, else the backend's default (absolute)."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Where objects are kept, for people: a folder or `s3://bucket/prefix`."""

    def ensure_directories(self) -> None:
        """Create the local folders this backend writes to (scratch at least)."""
        self.scratch_dir.mkdir(parents=True, exist_ok=True)

    async def aclose(self) -> None:  # noqa: B027 (a backend may hold nothing to close)
        """Release connections; the storage is not used afterwards."""

    # -- keys ----------------------------------------------------------------------------

    @staticmethod
    def input_key(
        img_unique_id: str, accepted_at: datetime, original_name: str, suffix: str
    ) -> str:
        """The key of an accepted input image; the client's name is sanitised first."""
        stem = safe_filename(PurePosixPath(safe_filename(original_name)).stem, max_length=60)
        day = accepted_at.astimezone(UTC)
        return f"{UPLOADS}/{day:%Y%m%d}/{day:%Y%m%d_%H%M%S}_{img_unique_id}_{stem}{suffix}"

    @staticmethod
    def result_prefix(img_unique_id: str, accepted_at: datetime) -> str:
        """The key prefix (ending in `/`) of one inspection's result objects."""
        return f"{RESULTS}/{accepted_at.astimezone(UTC):%Y%m%d}/{img_unique_id}/"

    @classmethod
    def result_key(cls, img_unique_id: str, accepted_at: datetime, kind: str) -> str:
        """The key of a result object; `kind` is `combined`, `mask`, `overlay` or
        `analysis`.

        Raises:
            KeyError: another kind.
        """
        name = ANALYSIS_FILE_NAME if kind == "analysis" else RESULT_FILE_NAMES[kind]
        return cls.result_prefix(img_unique_id, accepted_at) + name

    @staticmethod
    def answers_prefix(img_unique_id: str, accepted_at: datetime) -> str:
        """The key prefix (ending in `/`) of every stored answer of a model service other
        than the primary one for one inspection (shadow runs and replays); each answer's
        PNGs lie in a folder of their own below it."""
        return f"{ANSWERS}/{accepted_at.astimezone(UTC):%Y%m%d}/{img_unique_id}/"

    @staticmethod
    def thumbnail_prefix(img_unique_id: str) -> str:
        """The key prefix (ending in `/`) of an inspection's cached thumbnails."""
        return f"{THUMBNAILS}/{img_unique_id}/"

    @classmethod
    def thumbnail_key(cls, img_unique_id: str, kind: str, size: int) -> str:
        """The key of a cached thumbnail (JPEG, longest side `size` pixels)."""
        return f"{cls.thumbnail_prefix(img_unique_id)}{kind}_{size}.jpg"

    @classmethod
    def derived_key(cls, img_unique_id: str, name: str) -> str:
        """The key of a file derived from an inspection's stored files and cached beside its
        thumbnails (e.g. `name` = `input.png`, the PNG rendition of a TIFF input), so it is
        deleted with them (`remove_inspection_files`).

        Raises:
            ValueError: `name` is not a plain file name.
        """
        if not name or name != PurePosixPath(name).name or name.startswith("."):
            raise ValueError(f"not a plain file name: {name!r}")
        return f"{cls.thumbnail_prefix(img_unique_id)}{name}"

    def key_of(self, stored: str) -> str:
        """The key of a path stored in the database.

        A key is returned as it is. Older rows may hold an absolute path, or a path
        relative to DATA_DIR when UPLOAD_DIR or RESULT_DIR named other folders: those
        are mapped to their key through the same settings.

        Raises:
            ValueError: the path is empty, climbs out (`..`), or lies outside DATA_DIR,
                UPLOAD_DIR and RESULT_DIR.
        """
        if not stored or ("\\" in stored and not PureWindowsPath(stored).is_absolute()):
            raise ValueError(f"stored path {stored!r} is not a key")
        if not (PurePosixPath(stored).is_absolute() or PureWindowsPath(stored).is_absolute()):
            parts = PurePosixPath(stored).parts
            if ".." in parts or not parts:
                raise ValueError(f"stored path {stored!r} climbs out of the store")
            if parts[0] in (UPLOADS, RESULTS, THUMBNAILS, ANSWERS):
                return PurePosixPath(*parts).as_posix()
            path = (self.data_dir / Path(*parts)).resolve()
        else:
            path = Path(stored).resolve()
        for root, prefix in ((self.upload_dir, UPLOADS), (self.result_dir, RESULTS)):
            if path.is_relative_to(root):
                return PurePosixPath(prefix, *path.relative_to(root).parts).as_posix()
        if path.is_relative_to(self.data_dir):
            return PurePosixPath(*path.relative_to(self.data_dir).parts).as_posix()
        raise ValueError(f"stored path {stored!r} is outside the storage folders")

    def stored_forms(self, prefix: str) -> list[str]:
        """The forms a key prefix (ending in `/`) may take in the database: the key itself,
        and the absolute or DATA_DIR-relative path older rows may hold (see `key_of`)."""
        forms = [prefix]
        parts = prefix.rstrip("/").split("/")
        root = {UPLOADS: self.upload_dir, RESULTS: self.result_dir}.get(parts[0])
        if root is not None:
            path = root.joinpath(*parts[1:])
            forms.append(path.as_posix() + "/")
            if path.is_relative_to(self.data_dir):
                relative = PurePosixPath(*path.relative_to(self.data_dir).parts).as_posix()
                forms.append(relative + "/")
        return list(dict.fromkeys(forms))

    # -- scratch -------------------------------------------------------------------------

    def new_incoming_path(self) -> Path:
        """A fresh local scratch file name for an upload being received."""
        return self.scratch_dir / f"{uuid.uuid4().hex}.part"

    async def old_incoming_files(self, older_than: float) -> list[Path]:
        """Scratch files (`.part`) last written before `older_than` (epoch seconds)."""

        def find() -> list[Path]:
            if not self.scratch_dir.is_dir():
                return []
            return [p for p in self.scratch_dir.iterdir() if p.is_file() and _older(p, older_than)]

        return await anyio.to_thread.run_sync(find)

    async def remove_scratch(self, path: Path | None) -> None:
        """Delete a scratch file if it exists."""
        if path is not None:
            await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))

    async def disk_usage(self) -> DiskUsage:
        """The local disk the agent still needs: see `DiskUsage`."""
        folder = self.disk_path

        def usage() -> DiskUsage:
            folder.mkdir(parents=True, exist_ok=True)
            total, used, free = shutil.disk_usage(folder)
            return DiskUsage(total, used, free)

        return await anyio.to_thread.run_sync(usage)

    @property
    def disk_path(self) -> Path:
        """The folder whose disk `disk_usage` reports."""
        return self.scratch_dir

    # -- the backend's primitives -----------------------------------------------------------

    @abstractmethod
    async def keep_input(
        self, incoming: Path, key: str, media_type: str, download_name: str | None = None
    ) -> None:
        """Keep a received scratch file under `key`; the scratch file is gone afterwards
        (moved, or uploaded and removed). `download_name`: see `put`.

        Raises:
            OSError: the write failed (the scratch file is kept; the caller removes it).
        """

    @abstractmethod
    async def put(
        self,
        key: str,
        data: bytes,
        media_type: str | None = None,
        download_name: str | None = None,
    ) -> None:
        """Write `data` under `key`, replacing what was there; readers see the old or the
        new object, never a part.

        `download_name`: the file name a download of the object gets (the name the agent
        gives when it sends the file itself); the object store keeps it as the object's
        `Content-Disposition: attachment`, so a presigned download saves under that name.
        The folder backend ignores it (the agent always sends its files).

        Raises:
            OSError: the write failed (e.g. a full disk: `is_disk_full`).
        """

    @abstractmethod
    async def get(self, key: str) -> bytes:
        """The whole object.

        Raises:
            FileNotFoundError: no such object.
        """

    @abstractmethod
    async def open_stream(self, key: str) -> ObjectStream:
        """The object as a stream of chunks, for answers and ZIPs (constant memory).

        Raises:
            FileNotFoundError: no such object.
        """

    @abstractmethod
    async def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""

    async def verify(self, *, write: bool = False) -> None:
        """Check that the store answers and lets the agent in: by default one existence
        check of a key that need not exist; a backend may look further (the object store
        lists its prefix, which a missing bucket fails). With `write` (at start-up), also
        write and delete a probe object.

        Raises:
            StorageMisconfigured: the bucket is missing or the credentials are refused.
            StorageUnavailable: the store is down or does not answer within S3_TIMEOUT_S.
        """
        try:
            await self.exists(HEALTH_PROBE_KEY)
        except OSError as exc:
            raise StorageUnavailable(f"{self.location}: {exc}") from exc

    async def check(self) -> StoreCheck:
        """Whether the store answers, for `/health` (`verify`, without writing); the last
        answer is reused for STORE_CHECK_CACHE_S seconds, so frequent health probes cost
        the store nothing more."""
        now = time.monotonic()
        if self._last_check is not None and now - self._last_check[0] < STORE_CHECK_CACHE_S:
            return self._last_check[1]
        try:
            await self.verify()
            found = StoreCheck("ok")
        except StorageMisconfigured as exc:
            found = StoreCheck("misconfigured", exc.detail)
        except StorageUnavailable as exc:
            found = StoreCheck("unavailable", exc.detail)
        self._last_check = (time.monotonic(), found)
        return found

    @abstractmethod
    def local_file(self, key: str) -> Path | None:
        """The local file holding `key` (folder backend), to be sent as it is; None for
        the object store."""

    @abstractmethod
    async def presigned_url(self, key: str) -> str | None:
        """A time-limited URL from which a client may GET the object directly, when the
        backend gives them (S3 with S3_PRESIGNED_DOWNLOADS=true); else None."""

    @abstractmethod
    async def delete(self, keys: Sequence[str]) -> None:
        """Delete objects; missing ones are ignored."""

    @abstractmethod
    def list_objects(self, prefix: str) -> AsyncIterator[StoredObject]:
        """Every object whose key starts with `prefix` (a folder prefix ending in `/`),
        in no particular order; temporary files are left out."""

    # -- composed from the primitives --------------------------------------------------------

    async def delete_prefix(self, prefix: str) -> None:
        """Delete every object under `prefix` (ending in `/`)."""
        keys = [obj.key async for obj in self.list_objects(prefix)]
        if keys:
            await self.delete(keys)

    def result_objects(
        self,
        img_unique_id: str,
        accepted_at: datetime,
        images: Mapping[str, bytes],
        analysis: Mapping[str, Any],
        download_stem: str | None = None,
    ) -> tuple[dict[str, str], list[ResultObject]]:
        """What `write_results` writes: the keys by kind (`combined`, `mask`, `overlay`,
        `analysis`) and the objects, the three PNGs first and the analysis JSON (UTF-8,
        indented by 2) last; with `download_stem`, each object's download name is
        `{stem}_{kind}.png` / `{stem}_analysis.json`, as the download routes name them."""
        keys = {kind: self.result_key(img_unique_id, accepted_at, kind) for kind in images}
        keys["analysis"] = self.result_key(img_unique_id, accepted_at, "analysis")
        body = fastjson.dumps_indented(analysis)

        def named(kind: str, extension: str) -> str | None:
            return f"{download_stem}_{kind}.{extension}" if download_stem else None

        objects = [
            ResultObject(keys[kind], images[kind], "image/png", named(kind, "png"))
            for kind in RESULT_FILE_NAMES
        ]
        objects.append(
            ResultObject(keys["analysis"], body, "application/json", named("analysis", "json"))
        )
        return keys, objects

    async def write_results(
        self,
        img_unique_id: str,
        accepted_at: datetime,
        images: Mapping[str, bytes],
        analysis: Mapping[str, Any],
        download_stem: str | None = None,
    ) -> dict[str, str]:
        """Write the three result PNGs and the analysis JSON of an inspection;
        `download_stem` (see `app.utils.ids.download_stem`) names their downloads (`put`).

        All or nothing: when any write fails, what was written is deleted and the error
        raised. The objects are not visible to users until the rows naming them commit.

        Returns:
            Keys by kind: `combined`, `mask`, `overlay`, `analysis`.

        Raises:
            OSError: a write to a folder failed (e.g. a full disk: `is_disk_full`).
            StorageUnavailable: the object store refused or did not answer.
        """
        keys, objects = self.result_objects(
            img_unique_id, accepted_at, images, analysis, download_stem
        )
        try:
            await self.put_results(objects)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.delete_prefix(self.result_prefix(img_unique_id, accepted_at))
            raise
        return keys

    async def put_results(self, objects: Sequence[ResultObject]) -> None:
        """Write the objects of `write_results`, which removes them all when this raises;
        by default one concurrent `put` each.

        Raises:
            OSError: a write failed (the first failure, not an exception group).
        """
        try:
            async with anyio.create_task_group() as group:
                for key, data, media_type, download_name in objects:
                    group.start_soon(self.put, key, data, media_type, download_name)
        except BaseExceptionGroup as exc:
            # The task group wraps errors in a group; callers look at the first one.
            raise exc.exceptions[0] from exc

    async def remove_inspection_files(
        self, input_stored: str | None, img_unique_id: str, accepted_at: datetime | None
    ) -> None:
        """Delete everything kept for one inspection: its input, its result objects and
        the answers of other model services (when `accepted_at` is given) and its
        thumbnails."""
        keys: list[str] = []
        if input_stored:
            with contextlib.suppress(ValueError):
                keys.append(self.key_of(input_stored))
        if keys:
            await self.delete(keys)
        if accepted_at is not None:
            await self.delete_prefix(self.result_prefix(img_unique_id, accepted_at))
            await self.delete_prefix(self.answers_prefix(img_unique_id, accepted_at))
        await self.delete_prefix(self.thumbnail_prefix(img_unique_id))

    # -- orphans (objects a killed agent left behind) -------------------------------------

    def _day_prefixes(self, root: str, days: Sequence[str] | None) -> list[str]:
        """`root/` (the whole tree), or `root/YYYYMMDD/` for each of `days`."""
        if days is None:
            return [f"{root}/"]
        return [f"{root}/{day}/" for day in sorted(set(days))]

    async def old_inputs_by_day(
        self, older_than: float, days: Sequence[str] | None = None
    ) -> dict[str, list[str]]:
        """Keys of inputs last written before `older_than` (epoch seconds), by their day
        prefix (`uploads/YYYYMMDD/`); listing all of `uploads/`, or with `days`
        (`YYYYMMDD`) only those days' folders."""
        out: dict[str, list[str]] = {}
        for prefix in self._day_prefixes(UPLOADS, days):
            async for obj in self.list_objects(prefix):
                parts = obj.key.split("/")
                if len(parts) == 3 and obj.modified < older_than:
                    out.setdefault(f"{parts[0]}/{parts[1]}/", []).append(obj.key)
        return out

    async def old_result_folders(
        self, older_than: float, days: Sequence[str] | None = None
    ) -> dict[str, str]:
        """Result prefixes whose objects all changed before `older_than` (epoch seconds),
        by the `img_unique_id` they are named after; listing all of `results/`, or with
        `days` (`YYYYMMDD`) only those days' folders."""
        newest: dict[str, tuple[str, float]] = {}
        for day_prefix in self._day_prefixes(RESULTS, days):
            async for obj in self.list_objects(day_prefix):
                parts = obj.key.split("/")
                if len(parts) != 4:
                    continue
                prefix = f"{parts[0]}/{parts[1]}/{parts[2]}/"
                seen = newest.get(parts[2])
                newest[parts[2]] = (prefix, max(obj.modified, seen[1] if seen else 0.0))
        return {img_id: prefix for img_id, (prefix, when) in newest.items() if when < older_than}

    async def old_answer_folders(
        self, older_than: float, days: Sequence[str] | None = None
    ) -> dict[str, str]:
        """Answer folders (`answers/YYYYMMDD/{img_unique_id}/{token}/`, one shadow or
        replay answer each) whose objects all changed before `older_than` (epoch
        seconds), mapped to the `img_unique_id` they lie under; listing all of
        `answers/`, or with `days` (`YYYYMMDD`) only those days' folders."""
        newest: dict[str, tuple[str, float]] = {}
        for day_prefix in self._day_prefixes(ANSWERS, days):
            async for obj in self.list_objects(day_prefix):
                parts = obj.key.split("/")
                if len(parts) != 5:
                    continue
                prefix = "/".join(parts[:4]) + "/"
                seen = newest.get(prefix)
                newest[prefix] = (parts[2], max(obj.modified, seen[1] if seen else 0.0))
        return {prefix: img for prefix, (img, when) in newest.items() if when < older_than}


def _older(path: Path, older_than: float) -> bool:
    try:
        return path.stat().st_mtime < older_than
    except OSError:  # removed meanwhile
        return False

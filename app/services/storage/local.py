"""Files on disk: inputs, result images, analysis JSON and thumbnails.

Layout (paths stored in the database are relative to DATA_DIR, `/`-separated):

    uploads/YYYYMMDD/{YYYYMMDD_HHMMSS}_{img_unique_id}_{safe original name}
    results/YYYYMMDD/{img_unique_id}/combined.png | mask.png | overlay.png | analysis.json

Every write goes to a temporary name first and is renamed into place, so a
reader never sees half a file. The methods here block: call them from a thread.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from app.config import Settings
from app.utils.ids import safe_filename

RESULT_FILE_NAMES = {
    "combined": "combined.png",
    "mask": "mask.png",
    "overlay": "overlay.png",
}
ANALYSIS_FILE_NAME = "analysis.json"
INCOMING_DIR_NAME = ".incoming"


class Storage:
    """Where the agent keeps its files, and the only code that touches them."""

    def __init__(self, settings: Settings) -> None:
        self.data_dir = settings.resolved_data_dir
        self.upload_dir = settings.resolved_upload_dir
        self.result_dir = settings.resolved_result_dir
        self.incoming_dir = self.upload_dir / INCOMING_DIR_NAME
        self.thumbnail_dir = self.data_dir / "thumbnails"

    def ensure_directories(self) -> None:
        """Create the storage folders if missing."""
        for folder in (self.upload_dir, self.result_dir, self.incoming_dir, self.thumbnail_dir):
            folder.mkdir(parents=True, exist_ok=True)

    # -- paths ---------------------------------------------------------------------------

    def to_stored(self, path: Path) -> str:
        """The database form of `path`: relative to DATA_DIR when inside it, else absolute."""
        try:
            return PurePosixPath(path.resolve().relative_to(self.data_dir)).as_posix()
        except ValueError:
            return path.resolve().as_posix()

    def resolve(self, stored: str) -> Path:
        """The absolute path of a stored path.

        Raises:
            ValueError: the path points outside the agent's storage folders.
        """
        candidate = Path(stored)
        path = (candidate if candidate.is_absolute() else self.data_dir / candidate).resolve()
        for root in (self.data_dir, self.upload_dir, self.result_dir):
            if path.is_relative_to(root):
                return path
        raise ValueError(f"stored path {stored!r} is outside the storage folders")

    def new_incoming_path(self) -> Path:
        """A fresh temporary name for a file being received."""
        return self.incoming_dir / f"{uuid.uuid4().hex}.part"

    def input_path(
        self, img_unique_id: str, accepted_at: datetime, original_name: str, suffix: str
    ) -> Path:
        """Where an accepted input image is kept; the client's name is sanitised first."""
        stem = safe_filename(Path(safe_filename(original_name)).stem, max_length=60)
        day = accepted_at.astimezone(UTC)
        name = f"{day:%Y%m%d_%H%M%S}_{img_unique_id}_{stem}{suffix}"
        return self.upload_dir / f"{day:%Y%m%d}" / name

    def result_folder(self, img_unique_id: str, accepted_at: datetime) -> Path:
        """The folder of one inspection's result files."""
        return self.result_dir / f"{accepted_at.astimezone(UTC):%Y%m%d}" / img_unique_id

    def derived_file(self, img_unique_id: str, name: str) -> Path:
        """Where a file derived from an inspection's stored files is cached (e.g. the PNG
        rendition of a TIFF input, `name` = `input.png`); removed with the inspection
        (`remove_inspection_files`). The caller writes it with `atomic_write`."""
        return self.thumbnail_dir / f"{img_unique_id}_{safe_filename(name)}"

    # -- writes --------------------------------------------------------------------------

    def keep_input(self, incoming: Path, destination: Path) -> None:
        """Move a received file into place (an atomic rename within the upload folder)."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(incoming, destination)

    def write_results(
        self, folder: Path, images: Mapping[str, bytes], analysis: Mapping[str, Any]
    ) -> dict[str, Path]:
        """Write the three result PNGs and the analysis JSON atomically into `folder`.

        Returns:
            Absolute paths by kind: `combined`, `mask`, `overlay`, `analysis`.
        """
        folder.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for kind, name in RESULT_FILE_NAMES.items():
            paths[kind] = folder / name
            atomic_write(paths[kind], images[kind])
        paths["analysis"] = folder / ANALYSIS_FILE_NAME
        atomic_write(
            paths["analysis"], json.dumps(analysis, ensure_ascii=False, indent=2).encode("utf-8")
        )
        return paths

    # -- removal -------------------------------------------------------------------------

    def remove_file(self, path: Path | None) -> None:
        """Delete a file if it exists."""
        if path is not None:
            path.unlink(missing_ok=True)

    def remove_folder(self, folder: Path) -> None:
        """Delete a result folder and everything in it, if it exists."""
        shutil.rmtree(folder, ignore_errors=True)

    def remove_inspection_files(
        self, input_stored: str | None, result_folder: Path | None, img_unique_id: str
    ) -> None:
        """Delete everything kept for one inspection: input, results and thumbnails."""
        if input_stored:
            with contextlib.suppress(ValueError):
                self.remove_file(self.resolve(input_stored))
        if result_folder is not None:
            self.remove_folder(result_folder)
        for thumb in self.thumbnail_dir.glob(f"{img_unique_id}_*"):
            thumb.unlink(missing_ok=True)

    # -- orphans (files a killed agent left behind) ------------------------------------------

    def old_incoming_files(self, older_than: float) -> list[Path]:
        """Temporary upload files (`.part`) last written before `older_than` (epoch seconds)."""
        if not self.incoming_dir.is_dir():
            return []
        return [p for p in self.incoming_dir.iterdir() if p.is_file() and _older(p, older_than)]

    def old_inputs_by_day(self, older_than: float) -> dict[str, list[Path]]:
        """Input files last written before `older_than`, by the stored prefix of their day
        folder (`uploads/YYYYMMDD/`)."""
        out: dict[str, list[Path]] = {}
        if not self.upload_dir.is_dir():
            return out
        for day in self.upload_dir.iterdir():
            if not day.is_dir() or day.name == INCOMING_DIR_NAME:
                continue
            files = [p for p in day.iterdir() if p.is_file() and _older(p, older_than)]
            if files:
                out[self.to_stored(day) + "/"] = files
        return out

    def old_result_folders(self, older_than: float) -> dict[str, Path]:
        """Result folders last changed before `older_than`, by the `img_unique_id` they are
        named after."""
        out: dict[str, Path] = {}
        if not self.result_dir.is_dir():
            return out
        for day in self.result_dir.iterdir():
            if not day.is_dir():
                continue
            for folder in day.iterdir():
                if folder.is_dir() and _older(folder, older_than):
                    out[folder.name] = folder
        return out

    def disk_usage(self) -> shutil._ntuple_diskusage:
        """Total, used and free bytes of the file system holding DATA_DIR."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.data_dir)


# "No space left on device" and "disk quota exceeded" (EDQUOT is POSIX-only; Windows
# reports a full disk as ENOSPC too).
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` is a write that failed because the disk (or the quota) is full."""
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS


def _older(path: Path, older_than: float) -> bool:
    try:
        return path.stat().st_mtime < older_than
    except OSError:  # removed meanwhile
        return False


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

"""Where inputs, result images, analysis JSON and thumbnails are kept: a folder or an
S3-compatible object store, behind one interface (`Storage`, see `base`)."""

from __future__ import annotations

from pathlib import Path

from app.config import Settings
from app.services.storage.base import (
    ANALYSIS_FILE_NAME,
    RESULT_FILE_NAMES,
    DiskUsage,
    ObjectStream,
    Storage,
    StoredObject,
)
from app.services.storage.local import LocalStorage, atomic_write, is_disk_full

__all__ = [
    "ANALYSIS_FILE_NAME",
    "RESULT_FILE_NAMES",
    "DiskUsage",
    "LocalStorage",
    "ObjectStream",
    "Storage",
    "StoredObject",
    "atomic_write",
    "is_disk_full",
    "open_storage",
]


def open_storage(settings: Settings, url: str | None = None) -> Storage:
    """The storage STORAGE_URL (or `url`) names: `s3://bucket/prefix` for an S3-compatible
    object store, a folder path for local files; unset, DATA_DIR as before.

    Raises:
        ValueError: an `s3://` URL without a bucket, or another URL scheme.
    """
    target = url if url is not None else settings.storage_url
    if not target:
        return LocalStorage(settings)
    if target.startswith("s3://"):
        from app.services.storage.s3 import S3Storage

        return S3Storage(settings, target)
    if "://" in target and not target.startswith("file://"):
        raise ValueError(f"STORAGE_URL {target!r}: use a folder or s3://bucket/prefix")
    return LocalStorage(settings, Path(target.removeprefix("file://")))

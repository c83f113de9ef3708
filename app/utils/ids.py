"""Identifiers of inspections and batches, and safe file names."""

from __future__ import annotations

import re
import secrets
import string
from datetime import UTC, datetime

from pathvalidate import sanitize_filename

_ALPHABET = string.ascii_uppercase + string.digits
IMG_UNIQUE_ID_PATTERN = r"^\d{8}_\d{6}_[A-Z0-9]{6}$"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_img_unique_id(at: datetime) -> str:
    """An inspection id like `20260225_103045_ABC123`: UTC date, time, six random A-Z/0-9."""
    return f"{at.astimezone(UTC):%Y%m%d_%H%M%S}_" + "".join(
        secrets.choice(_ALPHABET) for _ in range(6)
    )


def new_batch_id(at: datetime) -> str:
    """A batch id like `B_20260225_103045_ABC123`."""
    return "B_" + new_img_unique_id(at)


def safe_filename(name: str | None, max_length: int = 80) -> str:
    """A file-name part safe on Windows and POSIX: ASCII letters, digits, `.`, `_`, `-` only.

    Directory parts are dropped, reserved device names (CON, NUL, ...) are altered by
    pathvalidate, the stem is cut so the whole fits `max_length` characters with its
    extension kept; an empty result becomes `image`.
    """
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base).strip("._-")
    stem, dot, extension = cleaned.rpartition(".")
    if not dot or len(extension) > 10:
        stem, extension = cleaned, ""
    suffix = f".{extension}" if extension else ""
    shortened = stem[: max(1, max_length - len(suffix))].rstrip("._-") + suffix
    shortened = shortened.strip("._-")
    return sanitize_filename(shortened, platform="universal") if shortened else "image"


def download_stem(original_filename: str | None, img_unique_id: str) -> str:
    """The stem of every file name a download of an inspection gets:
    `{original name without extension}_{img_unique_id}`
    (e.g. `00041000_test_20260225_103045_ABC123`), safe on Windows and POSIX; just the id
    when there is no usable original name.
    """
    base = (original_filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    raw_stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    if not _UNSAFE.sub("_", raw_stem).strip("._-"):
        return img_unique_id
    return f"{safe_filename(raw_stem, max_length=60)}_{img_unique_id}"

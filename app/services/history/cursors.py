"""Opaque, url-safe cursors of keyset pagination.

A cursor names the last row of a page by its sort key: the next page is the rows after
that key in the listing's order, read from an index range, so page 1 and page 50,000
cost the same (`OFFSET` reads and throws away every row before the page).

Form: base64url (no padding) of the JSON array `[1, kind, *key]` — version 1, the
listing it belongs to, then the key: `[timestamp, img_unique_id]` for images (the
ledger's `created_at` for failed/pending/processing ones), `[timestamp, img_unique_id,
class_id, region_id, region_unique_id]` for defect regions. Clients treat it as opaque;
it is not signed (any well-formed key is just a position in the order, and the
listing's filters still apply), but everything in it is checked before it reaches SQL.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

CURSOR_VERSION = 1
MAX_CURSOR_LENGTH = 512
"""Characters; a real cursor is under 150."""
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"

IMAGE_KINDS = ("succeeded", "failed", "pending", "processing")
"""Cursor kinds of `/api/images`, one per `status`."""
DEFECTS_KIND = "defects"

_IMG_ID = re.compile(r"[0-9]{8}_[0-9]{6}_[A-Z0-9]{6}")
_INT4_MAX = 2**31 - 1
_INT8_MAX = 2**63 - 1


class BadCursor(ValueError):
    """The cursor is not one this agent wrote (or belongs to another listing)."""


@dataclass(frozen=True)
class ImageKey:
    """Position in a listing ordered by (timestamp DESC, img_unique_id DESC)."""

    timestamp: datetime
    img_unique_id: str


@dataclass(frozen=True)
class DefectKey:
    """Position in the defect-region order (timestamp DESC, img_unique_id, class_id,
    region_id, region_unique_id)."""

    timestamp: datetime
    img_unique_id: str
    class_id: int
    region_id: int
    region_unique_id: int


def _encode(kind: str, values: list[Any]) -> str:
    raw = json.dumps([CURSOR_VERSION, kind, *values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def encode_image_cursor(kind: str, key: ImageKey) -> str:
    """The cursor after `key` in the `/api/images` listing of status `kind`."""
    return _encode(kind, [key.timestamp.isoformat(), key.img_unique_id])


def encode_defect_cursor(key: DefectKey) -> str:
    """The cursor after `key` in `/api/query/defects`."""
    return _encode(
        DEFECTS_KIND,
        [
            key.timestamp.isoformat(),
            key.img_unique_id,
            key.class_id,
            key.region_id,
            key.region_unique_id,
        ],
    )


def _decode(token: str, kind: str) -> list[Any]:
    """The key values of `token`, a cursor of listing `kind`.

    Raises:
        BadCursor: malformed, another version, or another listing's cursor.
    """
    if not token or len(token) > MAX_CURSOR_LENGTH or not re.fullmatch(CURSOR_PATTERN, token):
        raise BadCursor("cursor is not a cursor from this listing's next_cursor")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise BadCursor("cursor is not a cursor from this listing's next_cursor") from exc
    if not isinstance(data, list) or len(data) < 2 or data[0] != CURSOR_VERSION:
        raise BadCursor("cursor is not a cursor from this listing's next_cursor")
    if data[1] != kind:
        raise BadCursor(
            f"cursor belongs to another listing ({str(data[1])[:32]!r}, not {kind!r}):"
            " pass the next_cursor of the same listing with the same status"
        )
    return data[2:]


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise BadCursor("cursor holds no valid timestamp")
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadCursor("cursor holds no valid timestamp") from exc
    if stamp.tzinfo is None:
        raise BadCursor("cursor holds no valid timestamp")
    return stamp


def _img_id(value: Any) -> str:
    if not isinstance(value, str) or not _IMG_ID.fullmatch(value):
        raise BadCursor("cursor holds no valid img_unique_id")
    return value


def _int(value: Any, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise BadCursor("cursor holds a number out of range")
    return value


def decode_image_cursor(token: str, kind: str) -> ImageKey:
    """The position a `/api/images` cursor names.

    Raises:
        BadCursor: not a cursor of the `kind` listing.
    """
    values = _decode(token, kind)
    if len(values) != 2:
        raise BadCursor("cursor is not a cursor from this listing's next_cursor")
    return ImageKey(_timestamp(values[0]), _img_id(values[1]))


def decode_defect_cursor(token: str) -> DefectKey:
    """The position a `/api/query/defects` cursor names.

    Raises:
        BadCursor: not a cursor of the defect query.
    """
    values = _decode(token, DEFECTS_KIND)
    if len(values) != 5:
        raise BadCursor("cursor is not a cursor from this listing's next_cursor")
    return DefectKey(
        _timestamp(values[0]),
        _img_id(values[1]),
        _int(values[2], _INT4_MAX),
        _int(values[3], _INT4_MAX),
        _int(values[4], _INT8_MAX),
    )

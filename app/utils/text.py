"""Text that is safe to store and to show: no control characters, bounded length."""

from __future__ import annotations

import re
from urllib.parse import quote

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def has_control_characters(text: str) -> bool:
    """Whether `text` holds a C0 control character (NUL, tab, CR, LF ...) or DEL."""
    return _CONTROL_CHARACTERS.search(text) is not None


def printable(text: str, max_length: int = 1000) -> str:
    """`text` with control characters replaced by `?` and cut to `max_length` characters
    (an ellipsis marks the cut). PostgreSQL `text` cannot hold NUL; people cannot read it."""
    cleaned = _CONTROL_CHARACTERS.sub("?", text)
    return cleaned if len(cleaned) <= max_length else cleaned[: max_length - 1] + "…"


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """A `Content-Disposition` header value naming `filename` (RFC 6266).

    An ASCII name without characters that need quoting is sent as `filename="..."`; any
    other gets the RFC 5987 form `filename*=UTF-8''<percent-encoded>` (as Starlette's
    `FileResponse` does), after an ASCII stand-in `filename="..."` for old clients.
    Download names (`download_stem`) are ASCII already; this keeps every path that sends
    one, the agent's answers and the objects of an object store, the same.
    """
    encoded = quote(filename)
    if encoded == filename:
        return f'{disposition}; filename="{filename}"'
    fallback = filename.encode("ascii", "replace").decode("ascii").replace('"', "_")
    fallback = _CONTROL_CHARACTERS.sub("_", fallback).replace("\\", "_")
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"

"""Text that is safe to store and to show: no control characters, bounded length."""

from __future__ import annotations

import re

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def has_control_characters(text: str) -> bool:
    """Whether `text` holds a C0 control character (NUL, tab, CR, LF ...) or DEL."""
    return _CONTROL_CHARACTERS.search(text) is not None


def printable(text: str, max_length: int = 1000) -> str:
    """`text` with control characters replaced by `?` and cut to `max_length` characters
    (an ellipsis marks the cut). PostgreSQL `text` cannot hold NUL; people cannot read it."""
    cleaned = _CONTROL_CHARACTERS.sub("?", text)
    return cleaned if len(cleaned) <= max_length else cleaned[: max_length - 1] + "…"

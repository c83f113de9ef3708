"""The double-review sample: which boards a second reviewer audits (REVIEW_AUDIT_RATE)."""

from __future__ import annotations

import hashlib


def in_audit_sample(img_unique_id: str, rate: float) -> bool:
    """Whether a board belongs to the double-review sample at `rate` (0-1): the first 8
    bytes of SHA-256(img_unique_id) read as a fraction of 2⁶⁴ fall below `rate`. The same
    board is always in or out at one rate (reproducible); 0 takes none, 1 takes all."""
    digest = hashlib.sha256(img_unique_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") < rate * 2**64

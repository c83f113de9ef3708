"""Who reads: the reviewer a read request comes from, for the blind second review
(docs/review.md, "Double review")."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote

from fastapi import Depends, Header

from app.api.security import PrincipalDep
from app.models.database import REVIEWER_LENGTH


def viewing_reviewer(
    principal: PrincipalDep,
    x_reviewer: Annotated[
        str | None,
        Header(
            max_length=3 * 4 * REVIEWER_LENGTH,
            description="Who asks, when AUTH_MODE is off (as for a verdict): a reviewer"
            " who audits the board, or may audit it, gets no first verdict or disposition.",
            examples=["line-1-qc"],
        ),
    ] = None,
) -> str | None:
    """The reviewer a read request comes from, if known: the key's name (auth on), else the
    `X-Reviewer` header when it is a valid name; None otherwise (never an error: a read
    needs no reviewer)."""
    if principal is not None and principal.via != "open" and principal.key_name:
        return principal.key_name
    if x_reviewer is None:
        return None
    try:
        name = unquote(x_reviewer, errors="strict").strip()
    except UnicodeDecodeError:
        return None
    return name if 1 <= len(name) <= REVIEWER_LENGTH and name.isprintable() else None


ViewerDep = Annotated[str | None, Depends(viewing_reviewer)]

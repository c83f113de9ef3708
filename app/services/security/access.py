"""Who may do what: the principal of a request, scope checks and the CSRF origin check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from app.errors import AgentError
from app.services.security.keys import Scope

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HOW_TO_GET_A_KEY = (
    "send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'; an admin"
    " creates one with `aoi-agent keys create --name NAME --scope read|write|admin`"
)


class NotAuthenticated(AgentError):
    """No valid API key, web session or signed link came with the request."""

    status_code = 401
    error = "not_authenticated"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer realm="aoi-agent"'}


class ScopeTooSmall(AgentError):
    """The key is valid but its scope does not allow this request."""

    status_code = 403
    error = "insufficient_scope"


class CrossSiteRequest(AgentError):
    """A state-changing request from a web session came from another site (CSRF)."""

    status_code = 403
    error = "cross_site_request_refused"


@dataclass(frozen=True)
class Principal:
    """Who is asking and how they proved it.

    `via`: `open` (auth off), `key` (a header), `session` (the web UI's cookie) or `link`
    (a signed download link, read-only and for its one resource). `key_id`: the row id of
    the key (of a key or a session), which request quotas count by.
    """

    scope: Scope
    via: Literal["open", "key", "session", "link"]
    key_name: str | None = None
    key_id: int | None = None


OPEN = Principal(Scope.ADMIN, "open")


def require_scope(principal: Principal, needed: Scope, method: str, path: str) -> None:
    """Raises ScopeTooSmall when `principal` may not do what needs `needed`."""
    if principal.scope.allows(needed):
        return
    raise ScopeTooSmall(
        f"{method} {path} needs a key of scope '{needed.value}' (or higher); the key"
        f" {principal.key_name!r} has scope '{principal.scope.value}'. Ask an admin for a key"
        f" of scope '{needed.value}' (`aoi-agent keys create --name NAME --scope {needed.value}`)"
    )


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of `url`, lower-case, or None when it has none."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_same_origin(origin: str | None, referer: str | None, own_origins: set[str]) -> None:
    """CSRF defence for cookie sessions (OWASP: verify the source origin): the request's
    Origin, or else its Referer's origin, must be one of the agent's own origins.

    Raises:
        CrossSiteRequest: neither header names one of `own_origins`.
    """
    source = origin if origin and origin != "null" else (origin_of(referer) if referer else None)
    if source is not None and source.lower() in own_origins:
        return
    raise CrossSiteRequest(
        f"refused: this request changes data and came from {source or 'an unknown page'},"
        " not from the agent's own pages. Use the agent's web UI, or send an API key header"
        " from scripts"
    )

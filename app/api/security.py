"""Authentication and authorisation as FastAPI dependencies, put on routers and routes.

`ReadAccess`, `WriteAccess`, `AdminAccess` (and `DownloadAccess`, which also accepts a
signed link) go in a router's or route's `dependencies=`, so a route is covered wherever it
is mounted (under `/api` and at the PRD's root paths alike). Routes without one are open.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.config import Settings
from app.errors import responses
from app.services.database.session import unit_of_work
from app.services.security.access import (
    HOW_TO_GET_A_KEY,
    OPEN,
    SAFE_METHODS,
    CrossSiteRequest,
    NotAuthenticated,
    Principal,
    ScopeTooSmall,
    check_same_origin,
    origin_of,
    require_scope,
)
from app.services.security.keys import KeyIdentity, KeyService, Scope
from app.services.security.repository import ApiKeyRepository
from app.services.security.sessions import WebSessionService
from app.services.security.signing import LinkExpired, LinkInvalid, LinkSigner, load_secret
from app.services.security.throttle import AuthThrottle, RateLimited, TooManyFailedAuthentications

SESSION_COOKIE = "aoi_session"

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="Bearer",
    description="An API key: `Authorization: Bearer aoi_…`.",
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="X-API-Key",
    description="The same API key in the `X-API-Key` header.",
)


@dataclass(frozen=True)
class SecurityContext:
    """The agent's security settings, link signer and throttle, built once per app."""

    settings: Settings
    links: LinkSigner
    throttle: AuthThrottle

    @property
    def required(self) -> bool:
        """Whether requests need a key, a session or a signed link (AUTH_MODE)."""
        return self.settings.auth_required


def build_security(settings: Settings) -> SecurityContext:
    """The security context of an app with `settings` (reads or makes the secret)."""
    secret = load_secret(settings.secret_key, settings.resolved_data_dir)
    return SecurityContext(
        settings,
        LinkSigner(secret, settings.download_link_ttl_s),
        AuthThrottle(
            settings.auth_failures_per_minute,
            settings.key_rate_limit,
            settings.throttle_storage_url,
        ),
    )


def get_security(request: Request) -> SecurityContext:
    """The app's security context."""
    context: SecurityContext = request.app.state.security
    return context


async def _security_dependency(request: Request) -> SecurityContext:
    # `async`, so FastAPI does not run it in its thread pool (see app/api/deps.py).
    return get_security(request)


SecurityDep = Annotated[SecurityContext, Depends(_security_dependency)]


def own_origins(request: Request, settings: Settings) -> set[str]:
    """The origins the agent's own pages are served from (request base, PUBLIC_BASE_URL)."""
    origins = {origin_of(str(request.base_url))}
    if settings.public_base_url:
        origins.add(origin_of(settings.public_base_url))
    return {o for o in origins if o}


def client_address(request: Request) -> str:
    """The address of the client: the TCP peer, or the client a proxy named in
    X-Forwarded-For when uvicorn trusts that proxy (FORWARDED_ALLOW_IPS, default
    127.0.0.1); never a header read here on trust."""
    return request.client.host if request.client else "unknown"


async def session_principal(request: Request) -> Principal | None:
    """The principal of the request's web-session cookie, or None (no cookie, or one whose
    session is unknown, ended, expired, or whose key was revoked): one indexed select."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    async with unit_of_work(request.app.state.runtime.sessions) as session:
        identity = await WebSessionService(session).identity(token)
    if identity is None:
        return None
    return Principal(identity.scope, "session", identity.name, identity.key_id)


async def check_key(request: Request, security: SecurityContext, key: str) -> KeyIdentity | None:
    """The identity of a presented API key, or None when it is wrong (counted as a failed
    authentication of the client's address).

    Raises:
        TooManyFailedAuthentications: the address is over AUTH_FAILURES_PER_MINUTE; raised
            before the key is looked up or hashed, so a throttled guess costs microseconds.
    """
    address = client_address(request)
    await security.throttle.check_address(address)
    async with unit_of_work(request.app.state.runtime.sessions) as session:
        identity = await KeyService(ApiKeyRepository(session)).authenticate(key.strip())
    if identity is None:
        await security.throttle.failed(address)
    return identity


async def current_principal(
    request: Request,
    security: SecurityDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    header_key: Annotated[str | None, Security(api_key_scheme)],
) -> Principal | None:
    """Who is asking: OPEN when auth is off; a key's principal from the headers; a web
    session's; None when the request carries none (a signed link may still apply).

    Raises:
        NotAuthenticated: a key was sent but is malformed, unknown or revoked.
        TooManyFailedAuthentications: a key was sent from an address over the limit of
            failed authentications.
        RateLimited: the key (or the session's key) is over KEY_RATE_LIMIT.
    """
    if not security.required:
        return OPEN
    key = (bearer.credentials if bearer else None) or header_key
    principal: Principal | None
    if key:
        identity = await check_key(request, security, key)
        if identity is None:
            raise NotAuthenticated(
                "the API key is not valid (unknown, mistyped or revoked); " + HOW_TO_GET_A_KEY
            )
        principal = Principal(identity.scope, "key", identity.name, identity.key_id)
    else:
        principal = await session_principal(request)
    if principal is not None and principal.key_id is not None:
        await security.throttle.spend(principal.key_id, principal.key_name)
    return principal


PrincipalDep = Annotated[Principal | None, Depends(current_principal)]


METHOD_SCOPES = {
    "GET": Scope.READ,
    "HEAD": Scope.READ,
    "OPTIONS": Scope.READ,
    "DELETE": Scope.ADMIN,
}


class Access:
    """A dependency that lets a request through only with at least `scope`; with no
    `scope`, the method decides: GET/HEAD read, DELETE admin, anything else write.

    With `signed_links`, a GET/HEAD with `signature` in its query is let through
    (read-only) when the signature matches the path and the whole query exactly (no
    parameter added, removed, changed or repeated) and has not expired.
    """

    def __init__(self, scope: Scope | None, *, signed_links: bool = False) -> None:
        self.scope = scope
        self.signed_links = signed_links

    async def __call__(
        self, request: Request, principal: PrincipalDep, security: SecurityDep
    ) -> Principal:
        method, path = request.method, request.url.path
        if principal is None:
            principal = self._signed_link(request, security)
        if principal.via == "session" and method not in SAFE_METHODS:
            check_same_origin(
                request.headers.get("origin"),
                request.headers.get("referer"),
                own_origins(request, security.settings),
            )
        needed = self.scope or METHOD_SCOPES.get(method, Scope.WRITE)
        require_scope(principal, needed, method, path)
        return principal

    def _signed_link(self, request: Request, security: SecurityContext) -> Principal:
        query = request.query_params
        if not (self.signed_links and "signature" in query and request.method in SAFE_METHODS):
            raise NotAuthenticated(
                f"{request.method} {request.url.path} needs authentication: {HOW_TO_GET_A_KEY}"
            )
        security.links.verify(request.url.path, request.url.query)
        return Principal(Scope.READ, "link")


AUTH_ERRORS = responses(
    NotAuthenticated, ScopeTooSmall, CrossSiteRequest, TooManyFailedAuthentications, RateLimited
)
LINK_ERRORS = responses(
    NotAuthenticated,
    ScopeTooSmall,
    LinkInvalid,
    LinkExpired,
    TooManyFailedAuthentications,
    RateLimited,
)

# On a router: each of its routes needs the scope of its method, unless it says otherwise.
MethodAccess = Depends(Access(None))
ReadAccess = Depends(Access(Scope.READ))
WriteAccess = Depends(Access(Scope.WRITE))
AdminAccess = Depends(Access(Scope.ADMIN))
DownloadAccess = Depends(Access(Scope.READ, signed_links=True))


def install_security(app: FastAPI, settings: Settings) -> SecurityContext:
    """Build the security context and keep it on `app.state.security`."""
    app.state.security = build_security(settings)
    return app.state.security

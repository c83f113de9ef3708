"""Page routes of the web UI. Each renders a template; the data comes from the API,
fetched by the page's JS module, so a page never waits on the database."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from app.api.security import (
    SESSION_COOKIE,
    SecurityContext,
    check_key,
    get_security,
    own_origins,
    session_principal,
)
from app.config import Settings
from app.errors import AgentError
from app.services.database.session import unit_of_work
from app.services.security.access import Principal, check_same_origin
from app.services.security.sessions import WebSessionService
from app.services.security.throttle import TooManyFailedAuthentications
from app.services.system.health import agent_version

APP_DIR = Path(__file__).resolve().parents[1]
STATIC_DIR = APP_DIR / "static"
TEMPLATE_DIR = APP_DIR / "templates"

ACCEPTED_TYPES = {
    "image/jpeg": [".jpg", ".jpeg"],
    "image/png": [".png"],
    "image/tiff": [".tif", ".tiff"],
    "image/bmp": [".bmp"],
}
"""Media types the agent accepts and their file extensions (for the client-side check)."""

NAV = [
    ("upload", "/", "Upload"),
    ("batch", "/batch", "Batch"),
    ("history", "/history", "History"),
    ("review", "/review", "Review"),
    ("dashboard", "/dashboard", "Dashboard"),
    ("webhooks", "/admin/webhooks", "Webhooks"),
    ("models", "/models", "Models"),
]

templates = Jinja2Templates(directory=TEMPLATE_DIR)


@functools.cache
def asset_version() -> str:
    """A token that changes when the agent or its own JS/CSS changes (cache busting).

    Computed once per process: assets change only with a new release or restart.
    """
    mtimes = [p.stat().st_mtime_ns for p in STATIC_DIR.glob("[cj]s*/*") if p.is_file()]
    return f"{agent_version()}-{max(mtimes, default=0) // 1_000_000_000:x}"


def page_context(settings: Settings, page: str, **extra: Any) -> dict[str, Any]:
    """What every template needs: the nav, upload limits and the asset version.

    `upload_limits` is read by the page JS: sizes in bytes, the batch size in files.
    """
    return {
        "page": page,
        "nav": NAV,
        "version": asset_version(),
        "upload_limits": {
            "max_file_size_bytes": settings.max_file_size_bytes,
            "max_file_size_mb": settings.max_file_size_mb,
            "max_batch_size": settings.max_batch_size,
            "accepted_types": ACCEPTED_TYPES,
        },
        **extra,
    }


class SignInRequired(Exception):
    """A page was asked for without a web session while API keys are required."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def sign_in_redirect(request: Request, exc: Exception) -> RedirectResponse:
    """The answer to SignInRequired: the sign-in page, coming back here afterwards."""
    assert isinstance(exc, SignInRequired)
    return RedirectResponse(f"/signin?next={quote(exc.next_path, safe='/')}", status_code=303)


def safe_next(path: str | None) -> str:
    """`path` when it is a path on this agent (not `//host` or a URL), else `/`."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


async def page_session(
    request: Request, security: Annotated[SecurityContext, Depends(get_security)]
) -> Principal | None:
    """The web session of a page request (None when auth is off).

    Raises:
        SignInRequired: keys are required and there is no valid session.
    """
    if not security.required:
        return None
    principal = await session_principal(request)
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    request.state.principal = principal
    return principal


def build_router(settings: Settings) -> APIRouter:
    """The page routes, bound to the agent's settings (hidden from the OpenAPI schema)."""
    router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
    pages = APIRouter(dependencies=[Depends(page_session)])

    def render(
        request: Request, template: str, page: str, status_code: int = 200, **extra: Any
    ) -> HTMLResponse:
        principal = getattr(request.state, "principal", None)
        context = page_context(
            settings,
            page,
            auth_required=settings.auth_required,
            session_hours=round(settings.session_ttl_s / 3600, 1),
            signed_in_as=principal.key_name if principal else None,
            **extra,
        )
        return templates.TemplateResponse(request, template, context, status_code=status_code)

    @router.get("/signin")
    async def signin_page(request: Request, next: str = "/") -> HTMLResponse:
        """Paste an API key to use the web UI while keys are required."""
        if not settings.auth_required:
            return RedirectResponse(safe_next(next), status_code=303)  # type: ignore[return-value]
        return render(request, "signin.html", "signin", next_path=safe_next(next))

    def cross_site_refusal(request: Request) -> HTMLResponse | None:
        """The sign-in page with a 403 when the form was posted from another site (CSRF),
        else None."""
        try:
            check_same_origin(
                request.headers.get("origin"),
                request.headers.get("referer"),
                own_origins(request, settings),
            )
        except AgentError as exc:
            return render(request, "signin.html", "signin", 403, error=exc.detail, next_path="/")
        return None

    @router.post("/signin")
    async def signin(
        request: Request,
        key: Annotated[str, Form(max_length=200)] = "",
        next: Annotated[str, Form(max_length=2000)] = "/",
    ) -> HTMLResponse:
        """Check the key (throttled per client address, as API keys are); on success open a
        server-side session, set its cookie and go to `next`."""
        security: SecurityContext = get_security(request)
        if (refused := cross_site_refusal(request)) is not None:
            return refused
        try:
            identity = await check_key(request, security, key)
        except TooManyFailedAuthentications as exc:
            page = render(
                request, "signin.html", "signin", 429, error=exc.detail, next_path=safe_next(next)
            )
            page.headers.update(exc.response_headers())
            return page
        if identity is None:
            return render(
                request,
                "signin.html",
                "signin",
                401,
                error="That key is not valid (unknown, mistyped or revoked). Ask an admin for a"
                " key: aoi-agent keys create --name NAME --scope write",
                next_path=safe_next(next),
            )
        async with unit_of_work(request.app.state.runtime.sessions) as session:
            token = await WebSessionService(session).open(identity.key_id, settings.session_ttl_s)
        response = RedirectResponse(safe_next(next), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=settings.session_ttl_s,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https"
            or (settings.public_base_url or "").startswith("https://"),
            path="/",
        )
        return response  # type: ignore[return-value]

    @router.post("/signout")
    async def signout(request: Request) -> HTMLResponse:
        """End the web session: its record at once (a copy of the cookie no longer opens
        anything) and the cookie."""
        if (refused := cross_site_refusal(request)) is not None:
            return refused
        if token := request.cookies.get(SESSION_COOKIE):
            async with unit_of_work(request.app.state.runtime.sessions) as session:
                await WebSessionService(session).end(token)
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response  # type: ignore[return-value]

    @pages.get("/")
    async def upload_page(request: Request) -> HTMLResponse:
        """Upload one image and see its result."""
        return render(request, "upload.html", "upload")

    @pages.get("/batch")
    async def batch_page(request: Request) -> HTMLResponse:
        """Upload many images (or a folder) and follow the batch; `?batch=<id>` (repeatable)
        shows batches already sent."""
        return render(request, "batch.html", "batch")

    @pages.get("/history")
    async def history_page(request: Request) -> HTMLResponse:
        """Gallery of processed images with filters."""
        return render(request, "history.html", "history")

    @pages.get("/results/{img_unique_id}")
    async def result_page(request: Request, img_unique_id: str) -> HTMLResponse:
        """The result viewer of one inspection."""
        return render(request, "viewer.html", "history", img_unique_id=img_unique_id)

    @pages.get("/board")
    async def board_search(request: Request, serial: str = "") -> HTMLResponse:
        """The History's serial search: to that board's page (back to History when empty)."""
        serial = serial.strip()
        target = f"/board/{quote(serial, safe='')}" if serial else "/history"
        return RedirectResponse(target, status_code=303)  # type: ignore[return-value]

    @pages.get("/board/{board_serial}")
    async def board_page(request: Request, board_serial: str) -> HTMLResponse:
        """A board's timeline: every inspection of its serial, first pass and re-inspections."""
        return render(request, "board.html", "history", board_serial=board_serial)

    @pages.get("/review")
    async def review_page(request: Request) -> HTMLResponse:
        """The review queue: choose a batch, class or days, see the progress and start
        reviewing the oldest board with unreviewed defects (`?batch_id=` etc. preset)."""
        return render(request, "review.html", "review")

    @pages.get("/dashboard")
    async def dashboard_page(request: Request) -> HTMLResponse:
        """Charts over all inspections (the control charts per shift only with SHIFTS)."""
        shifts = [s.name for s in settings.spc_shifts]
        return render(request, "dashboard.html", "dashboard", spc_shifts=shifts)

    @pages.get("/admin/webhooks")
    async def webhooks_page(request: Request) -> HTMLResponse:
        """Webhook endpoints and their deliveries, with Redeliver (its API needs an admin
        key; with another key the page says so)."""
        return render(request, "webhooks.html", "webhooks")

    @pages.get("/models")
    async def models_page(request: Request) -> HTMLResponse:
        """The model versions with answers and the comparison of two of them per defect
        class, with the images they disagree on (`?a=&b=` preset; docs/models.md)."""
        return render(request, "models.html", "models")

    router.include_router(pages)
    return router

"""Page routes of the web UI. Each renders a template; the data comes from the API,
fetched by the page's JS module, so a page never waits on the database."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.config import Settings
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
    ("dashboard", "/dashboard", "Dashboard"),
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


def build_router(settings: Settings) -> APIRouter:
    """The page routes, bound to the agent's settings (hidden from the OpenAPI schema)."""
    router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

    def render(request: Request, template: str, page: str, **extra: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, template, page_context(settings, page, **extra))

    @router.get("/")
    async def upload_page(request: Request) -> HTMLResponse:
        """Upload one image and see its result."""
        return render(request, "upload.html", "upload")

    @router.get("/batch")
    async def batch_page(request: Request) -> HTMLResponse:
        """Upload many images (or a folder) and follow the batch; `?batch=<id>` (repeatable)
        shows batches already sent."""
        return render(request, "batch.html", "batch")

    @router.get("/history")
    async def history_page(request: Request) -> HTMLResponse:
        """Gallery of processed images with filters."""
        return render(request, "history.html", "history")

    @router.get("/results/{img_unique_id}")
    async def result_page(request: Request, img_unique_id: str) -> HTMLResponse:
        """The result viewer of one inspection."""
        return render(request, "viewer.html", "history", img_unique_id=img_unique_id)

    @router.get("/dashboard")
    async def dashboard_page(request: Request) -> HTMLResponse:
        """Charts over all inspections."""
        return render(request, "dashboard.html", "dashboard")

    return router
